/* fork() with an open client: the parent tracks, forks, and both processes
 * keep tracking on the same client; the child then closes (flushing) and
 * exits, the parent waits for it and closes. Every event must arrive once,
 * and neither process may use the other's SQLite connection or thread.
 *
 *   forker CONFIG_JSON_FILE N DB_PATH  (N events per phase: parent, child, parent)
 * Prints "parent ok N", "child ok N", "child close <status>", "parent close
 * <status>"; exit status 0 when every call returned HERALD_OK. */
#include <dirent.h>
#include <herald/herald.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int track_n(herald_client *c, const char *who, int phase, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char props[128];
        snprintf(props, sizeof props, "{\"who\":\"%s\",\"phase\":%d,\"seq\":%d}", who, phase, i);
        if (herald_track(c, "Fork Test", props) == HERALD_OK)
            ok++;
    }
    return ok;
}

/* How many of this process's fds are open on `path`, and how many threads
 * it has: a child with its own connection and delivery thread shows 2 fds
 * (the parent's, abandoned, and its own) and at least 2 threads. */
static int count_fds_on(const char *path)
{
    char want[PATH_MAX];
    if (realpath(path, want) == NULL)
        return -1;
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char link[PATH_MAX + 32], target[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len > 0) {
            target[len] = '\0';
            n += strcmp(target, want) == 0;
        }
    }
    if (d)
        closedir(d);
    return n;
}

static int count_threads(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: forker CONFIG_JSON_FILE N DB_PATH\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (f == NULL)
        return 2;
    static char config[65536];
    size_t len = fread(config, 1, sizeof config - 1, f);
    fclose(f);
    config[len] = '\0';
    int n = atoi(argv[2]);

    herald_client *c = NULL;
    if (herald_open_json(&c, config) != HERALD_OK) {
        char why[512];
        herald_last_error(NULL, why, sizeof why);
        fprintf(stderr, "open: %s\n", why);
        return 1;
    }
    int ok = track_n(c, "parent", 1, n);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        int child_ok = track_n(c, "child", 2, n);
        printf("child ok %d\n", child_ok);
        printf("child db fds %d\n", count_fds_on(argv[3]));
        printf("child threads %d\n", count_threads());
        herald_status st = herald_close(c, 20000);
        printf("child close %d\n", st);
        fflush(stdout);
        _exit(child_ok == n && st == HERALD_OK ? 0 : 1);
    }
    ok += track_n(c, "parent", 3, n);
    printf("parent ok %d\n", ok);
    int status = 0;
    waitpid(pid, &status, 0);
    herald_status st = herald_close(c, 20000);
    printf("parent close %d\n", st);
    return ok == 2 * n && st == HERALD_OK && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
