#include "CRdmigAEAD.h"

// BoringSSL's EVP_AEAD API (include/openssl/aead.h), with swift-crypto's symbol prefix; the
// context is only ever handled through pointers, so no struct layout is assumed here.
typedef struct evp_aead_st EVP_AEAD;
typedef struct evp_aead_ctx_st EVP_AEAD_CTX;
extern const EVP_AEAD *CCryptoBoringSSL_EVP_aead_aes_256_gcm(void);
extern EVP_AEAD_CTX *CCryptoBoringSSL_EVP_AEAD_CTX_new(const EVP_AEAD *aead, const uint8_t *key, size_t key_len, size_t tag_len);
extern void CCryptoBoringSSL_EVP_AEAD_CTX_free(EVP_AEAD_CTX *ctx);
extern int CCryptoBoringSSL_EVP_AEAD_CTX_seal_scatter(
    const EVP_AEAD_CTX *ctx, uint8_t *out, uint8_t *out_tag, size_t *out_tag_len, size_t max_out_tag_len,
    const uint8_t *nonce, size_t nonce_len, const uint8_t *in, size_t in_len, const uint8_t *extra_in,
    size_t extra_in_len, const uint8_t *ad, size_t ad_len);
extern int CCryptoBoringSSL_EVP_AEAD_CTX_open_gather(
    const EVP_AEAD_CTX *ctx, uint8_t *out, const uint8_t *nonce, size_t nonce_len, const uint8_t *in,
    size_t in_len, const uint8_t *in_tag, size_t in_tag_len, const uint8_t *ad, size_t ad_len);

rdmig_aead *rdmig_aead_aes256gcm_new(const uint8_t *key) {
    return (rdmig_aead *)CCryptoBoringSSL_EVP_AEAD_CTX_new(CCryptoBoringSSL_EVP_aead_aes_256_gcm(), key, 32, 16);
}

void rdmig_aead_free(rdmig_aead *aead) {
    CCryptoBoringSSL_EVP_AEAD_CTX_free((EVP_AEAD_CTX *)aead);
}

int rdmig_aead_seal(const rdmig_aead *aead, uint8_t *out, const uint8_t nonce[12],
                    const uint8_t *in, size_t length, const uint8_t *ad, size_t ad_length) {
    size_t tag_length = 0;
    return CCryptoBoringSSL_EVP_AEAD_CTX_seal_scatter((const EVP_AEAD_CTX *)aead, out, out + length, &tag_length, 16,
                                                      nonce, 12, in, length, NULL, 0, ad, ad_length) == 1 && tag_length == 16;
}

int rdmig_aead_open(const rdmig_aead *aead, uint8_t *data, const uint8_t nonce[12], size_t length,
                    const uint8_t tag[16], const uint8_t *ad, size_t ad_length) {
    return CCryptoBoringSSL_EVP_AEAD_CTX_open_gather((const EVP_AEAD_CTX *)aead, data, nonce, 12, data, length,
                                                     tag, 16, ad, ad_length) == 1;
}
