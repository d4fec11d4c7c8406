#ifndef SIDENODE_CSECP256K1_SHIM_H
#define SIDENODE_CSECP256K1_SHIM_H
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>
#include <secp256k1_recovery.h>

/* The context flag macros are bit-or expressions that Swift does not import. */
static inline secp256k1_context *sidenode_secp256k1_context_create(void) {
    return secp256k1_context_create(SECP256K1_CONTEXT_SIGN | SECP256K1_CONTEXT_VERIFY);
}

static inline unsigned int sidenode_secp256k1_ec_compressed(void) {
    return SECP256K1_EC_COMPRESSED;
}

static inline unsigned int sidenode_secp256k1_ec_uncompressed(void) {
    return SECP256K1_EC_UNCOMPRESSED;
}
#endif
