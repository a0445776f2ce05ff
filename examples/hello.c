/* The smallest complete herald program: open a client with one REST
 * destination, record a few events, flush, close.
 *
 *   ./hello http://127.0.0.1:8765/v1/batch [queue.db]
 */
#include <herald/herald.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL [DB_PATH]\n", argv[0]);
        return 2;
    }
    char config[512];
    snprintf(config, sizeof config, "{\"url\": \"%s\"}", argv[1]);
    herald_destination dest = {.name = "collector", .backend = "rest", .config_json = config};

    herald_options opts;
    herald_options_init(&opts);
    opts.db_path = argc > 2 ? argv[2] : "hello.db";
    opts.destinations = &dest;
    opts.destination_count = 1;

    herald_client *client = NULL;
    herald_status st = herald_open(&client, &opts);
    if (st != HERALD_OK) {
        char why[512];
        herald_last_error(NULL, why, sizeof why);
        fprintf(stderr, "herald_open: %s: %s\n", herald_strerror(st), why);
        return 1;
    }

    herald_identify(client, "user-42", "{\"plan\": \"pro\"}");
    herald_page(client, "Pricing", "{\"url\": \"https://example.com/pricing\"}");

    herald_props *props = herald_props_new();
    herald_props_set_string(props, "plan", "pro");
    herald_props_set_int(props, "seats", 12);
    st = herald_track(client, "Subscription Upgraded", herald_props_json(props));
    herald_props_free(props);
    if (st != HERALD_OK) {
        char why[512];
        herald_last_error(client, why, sizeof why);
        fprintf(stderr, "herald_track: %s: %s\n", herald_strerror(st), why);
    }

    /* Wait up to 5 s for delivery; whatever is left stays queued on disk. */
    st = herald_close(client, 5000);
    printf("%s\n", st == HERALD_OK ? "delivered" : "queued for the next run");
    return 0;
}
