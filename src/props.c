/* herald_props: a small JSON object builder for C callers. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "herald/herald.h"

struct herald_props {
    json_t *object;
    char *text; /* cached serialization; dropped on every change */
};

herald_props *herald_props_new(void)
{
    herald_props *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->object = json_object();
    if (p->object == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

void herald_props_free(herald_props *p)
{
    if (p == NULL)
        return;
    json_decref(p->object);
    free(p->text);
    free(p);
}

/* Takes over `value` (NULL means the value could not be made). */
static herald_status set(herald_props *p, const char *key, json_t *value, herald_status if_null)
{
    if (p == NULL || key == NULL) {
        json_decref(value);
        return HERALD_E_INVALID_ARGUMENT;
    }
    if (value == NULL)
        return if_null;
    if (json_object_set_new(p->object, key, value) != 0)
        return HERALD_E_INVALID_ARGUMENT; /* key is not valid UTF-8 */
    free(p->text);
    p->text = NULL;
    return HERALD_OK;
}

herald_status herald_props_set_string(herald_props *p, const char *key, const char *value)
{
    return set(p, key, value ? json_string(value) : NULL, HERALD_E_INVALID_ARGUMENT);
}

herald_status herald_props_set_int(herald_props *p, const char *key, int64_t value)
{
    return set(p, key, json_integer((json_int_t)value), HERALD_E_NO_MEMORY);
}

herald_status herald_props_set_double(herald_props *p, const char *key, double value)
{
    if (!isfinite(value))
        return set(p, key, NULL, HERALD_E_INVALID_ARGUMENT);
    return set(p, key, json_real(value), HERALD_E_NO_MEMORY);
}

herald_status herald_props_set_bool(herald_props *p, const char *key, int value)
{
    return set(p, key, json_boolean(value), HERALD_E_NO_MEMORY);
}

herald_status herald_props_set_null(herald_props *p, const char *key)
{
    return set(p, key, json_null(), HERALD_E_NO_MEMORY);
}

herald_status herald_props_set_json(herald_props *p, const char *key, const char *json)
{
    json_t *value = json ? json_loads(json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL) : NULL;
    return set(p, key, value, json ? HERALD_E_INVALID_JSON : HERALD_E_INVALID_ARGUMENT);
}

const char *herald_props_json(herald_props *p)
{
    if (p == NULL)
        return NULL;
    if (p->text == NULL)
        p->text = json_dumps(p->object, JSON_COMPACT);
    return p->text;
}
