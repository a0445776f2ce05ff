/*
 * SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104) for the redactor: the
 * keyed hash mode of PII.md §2.4 and the base58check validator of V9.
 * Self-contained so the library needs no crypto dependency; checked against
 * the FIPS and RFC 4231 vectors in tests/unit/test_redact.c.
 */
#include <string.h>

#include "redact_internal.h"

static const uint32_t round_constants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static uint32_t rotate_right(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static void compress(uint32_t state[8], const unsigned char block[64])
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | (uint32_t)block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotate_right(w[i - 15], 7) ^ rotate_right(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotate_right(w[i - 2], 17) ^ rotate_right(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t s1 = rotate_right(e, 6) ^ rotate_right(e, 11) ^ rotate_right(e, 25);
        uint32_t choose = (e & f) ^ (~e & g);
        uint32_t t1 = h + s1 + choose + round_constants[i] + w[i];
        uint32_t s0 = rotate_right(a, 2) ^ rotate_right(a, 13) ^ rotate_right(a, 22);
        uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = s0 + majority;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

void redact_sha256_init(redact_sha256 *ctx)
{
    static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->state, initial, sizeof initial);
    ctx->length = 0;
    ctx->used = 0;
}

void redact_sha256_update(redact_sha256 *ctx, const void *data, size_t len)
{
    const unsigned char *p = data;
    ctx->length += len;
    if (ctx->used > 0) {
        size_t take = 64 - ctx->used < len ? 64 - ctx->used : len;
        memcpy(ctx->block + ctx->used, p, take);
        ctx->used += take;
        p += take;
        len -= take;
        if (ctx->used < 64)
            return;
        compress(ctx->state, ctx->block);
        ctx->used = 0;
    }
    for (; len >= 64; p += 64, len -= 64)
        compress(ctx->state, p);
    if (len > 0) {
        memcpy(ctx->block, p, len);
        ctx->used = len;
    }
}

void redact_sha256_final(redact_sha256 *ctx, unsigned char out[32])
{
    uint64_t bits = ctx->length * 8;
    unsigned char pad = 0x80;
    redact_sha256_update(ctx, &pad, 1);
    unsigned char zero = 0;
    while (ctx->used != 56)
        redact_sha256_update(ctx, &zero, 1);
    unsigned char length[8];
    for (int i = 0; i < 8; i++)
        length[i] = (unsigned char)(bits >> (56 - 8 * i));
    redact_sha256_update(ctx, length, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(ctx->state[i] >> 24);
        out[4 * i + 1] = (unsigned char)(ctx->state[i] >> 16);
        out[4 * i + 2] = (unsigned char)(ctx->state[i] >> 8);
        out[4 * i + 3] = (unsigned char)ctx->state[i];
    }
}

void redact_sha256_once(const void *data, size_t len, unsigned char out[32])
{
    redact_sha256 ctx;
    redact_sha256_init(&ctx);
    redact_sha256_update(&ctx, data, len);
    redact_sha256_final(&ctx, out);
}

void redact_wipe(void *p, size_t len)
{
    volatile unsigned char *v = p;
    while (len--)
        *v++ = 0;
}

void redact_hmac_key_init(redact_hmac_key *key, const unsigned char *secret, size_t len)
{
    unsigned char block[64];
    memset(block, 0, sizeof block);
    if (len > sizeof block)
        redact_sha256_once(secret, len, block);
    else
        memcpy(block, secret, len);

    unsigned char pad[64];
    for (int i = 0; i < 64; i++)
        pad[i] = (unsigned char)(block[i] ^ 0x36);
    redact_sha256_init(&key->inner);
    redact_sha256_update(&key->inner, pad, sizeof pad);
    for (int i = 0; i < 64; i++)
        pad[i] = (unsigned char)(block[i] ^ 0x5c);
    redact_sha256_init(&key->outer);
    redact_sha256_update(&key->outer, pad, sizeof pad);
    redact_wipe(block, sizeof block);
    redact_wipe(pad, sizeof pad);
}

void redact_hmac3(const redact_hmac_key *key, const void *a, size_t alen, const void *b,
                  size_t blen, const void *c, size_t clen, unsigned char out[32])
{
    redact_sha256 ctx = key->inner;
    if (a != NULL)
        redact_sha256_update(&ctx, a, alen);
    if (b != NULL)
        redact_sha256_update(&ctx, b, blen);
    if (c != NULL)
        redact_sha256_update(&ctx, c, clen);
    unsigned char inner[32];
    redact_sha256_final(&ctx, inner);
    ctx = key->outer;
    redact_sha256_update(&ctx, inner, sizeof inner);
    redact_sha256_final(&ctx, out);
    redact_wipe(&ctx, sizeof ctx);
}
