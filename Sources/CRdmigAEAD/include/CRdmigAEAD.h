#ifndef CRDMIG_AEAD_H
#define CRDMIG_AEAD_H
#include <stddef.h>
#include <stdint.h>

// AES-256-GCM without allocation or extra copies, for the tcp backend's frames: BoringSSL's
// EVP_AEAD interface (the BoringSSL that swift-crypto builds and links, whose symbols carry
// the CCryptoBoringSSL_ prefix). swift-crypto's Swift API returns a new Data per call, which
// cost an allocation and a copy per frame each way (measured: encrypted bench transport at
// 0.45 x plain with it).
typedef struct rdmig_aead rdmig_aead;

// A context for a 32-byte key and 16-byte tags; NULL on failure.
rdmig_aead *rdmig_aead_aes256gcm_new(const uint8_t *key);
void rdmig_aead_free(rdmig_aead *aead);

// Encrypts `length` bytes of `in` into `out` and writes the 16-byte tag at out + length.
// `out` must not overlap `in` unless equal. Returns 1 on success.
int rdmig_aead_seal(const rdmig_aead *aead, uint8_t *out, const uint8_t nonce[12],
                    const uint8_t *in, size_t length, const uint8_t *ad, size_t ad_length);

// Checks `tag` and decrypts `length` bytes of `data` in place. Returns 1 when authentic; on
// failure `data` may have been overwritten.
int rdmig_aead_open(const rdmig_aead *aead, uint8_t *data, const uint8_t nonce[12], size_t length,
                    const uint8_t tag[16], const uint8_t *ad, size_t ad_length);
#endif
