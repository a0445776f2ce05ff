#!/usr/bin/python3
"""Sum test results of every suite into one line: 'N passed, N failed'.

Arguments are result files: meson's testlog.json (cmocka binaries: their
"[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)" lines are counted, and
a binary that died without them counts as one failure) and pytest JUnit XML.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for path in sys.argv[1:]:
    label = path
    try:
        if path.endswith(".json"):
            with open(path) as f:
                for line in f:
                    if not line.strip():
                        continue
                    t = json.loads(line)
                    out = t.get("stdout", "") + t.get("stderr", "")
                    p = sum(int(n) for n in re.findall(r"\[  PASSED  \] (\d+) test", out))
                    fl = sum(int(n) for n in re.findall(r"\[  FAILED  \] (\d+) test", out))
                    if t.get("result") not in ("OK", "EXPECTEDFAIL") and fl == 0:
                        fl = 1  # crashed, timed out or a sanitizer fired
                    if p == 0 and fl == 0 and t.get("result") == "OK":
                        p = 1  # a plain test without cmocka output
                    passed += p
                    failed += fl
        else:
            root = ET.parse(path).getroot()
            suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
            for s in suites:
                total = int(s.get("tests", 0))
                bad = int(s.get("failures", 0)) + int(s.get("errors", 0))
                skip = int(s.get("skipped", 0))
                passed += total - bad - skip
                failed += bad
                skipped += skip
            # node --test puts a file that fails to load (and tests outside
            # any describe) straight under <testsuites>.
            if root.tag == "testsuites":
                for case in root.findall("testcase"):
                    if case.find("failure") is not None or case.find("error") is not None:
                        failed += 1
                    elif case.find("skipped") is not None:
                        skipped += 1
                    else:
                        passed += 1
    except (OSError, ValueError, ET.ParseError) as e:
        print(f"summarize: cannot read {label}: {e}", file=sys.stderr)
        failed += 1

line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed else 0)
