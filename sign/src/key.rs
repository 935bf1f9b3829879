//! Sigstore (cosign) keys: an ECDSA P-256 key pair, the private half kept
//! as cosign and skopeo read it.
//!
//! The private key file is a PEM block (`ENCRYPTED SIGSTORE PRIVATE KEY`,
//! or cosign 1.x's `ENCRYPTED COSIGN PRIVATE KEY`) whose body is the JSON
//! document of go-tuf's `encrypted` package:
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"…"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"…"},"ciphertext":"…"}
//! ```
//!
//! The key is scrypt(passphrase, salt, N, r, p) (32 bytes), the plaintext
//! the PKCS#8 DER of the private key, sealed with NaCl's secretbox
//! (XSalsa20-Poly1305) under a random 24-byte nonce; byte strings are
//! standard base64, as Go's `encoding/json` writes `[]byte`. The public key
//! is a PKIX `PUBLIC KEY` PEM block.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The PEM label cosign 2 and later write.
pub const SIGSTORE_PEM_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label cosign 1.x wrote, and the only one the sigstore code of
/// containers/image 5.2x (skopeo 1.9) reads.
pub const COSIGN_PEM_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// scrypt's cost (log2 N) for new keys: N = 32768, r = 8, p = 1, the
/// parameters go-tuf's `encrypted` package writes and the only ones its
/// older releases (containers/image 5.2x) accept.
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;

/// Errors of key files and of signing and verifying with them.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file is not the PEM block expected.
    #[error("{what}: {why}")]
    Format {
        /// The key file (or `keyData`).
        what: String,
        /// What is wrong.
        why: String,
    },
    /// The passphrase does not open the key (or the file was changed).
    #[error("{0}: wrong passphrase, or the key file was changed (decryption failed)")]
    Decrypt(String),
    /// A key of another kind than ECDSA P-256.
    #[error("{what}: {why}; rumoci signs and verifies with ECDSA P-256 keys only")]
    Unsupported {
        /// The key file.
        what: String,
        /// What kind of key it is.
        why: String,
    },
    /// A signature that is not base64 of a DER ECDSA signature, or does not
    /// verify.
    #[error("{0}")]
    BadSignature(String),
}

impl KeyError {
    /// What kind of failure this is.
    pub fn kind(&self) -> rumoci_core::ErrorKind {
        match self {
            KeyError::Unsupported { .. } => rumoci_core::ErrorKind::Unsupported,
            KeyError::BadSignature(_) => rumoci_core::ErrorKind::Integrity,
            _ => rumoci_core::ErrorKind::InvalidInput,
        }
    }
}

/// scrypt's parameters as go-tuf writes them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cipher {
    name: String,
    nonce: String,
}

/// go-tuf's `encrypted` document.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

/// A private signing key (ECDSA P-256).
pub struct PrivateKey {
    key: SigningKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(P-256)")
    }
}

/// A public key (ECDSA P-256) that signatures are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

/// scrypt(passphrase, salt, 2^log_n, [`SCRYPT_R`], [`SCRYPT_P`]), 32 bytes.
fn scrypt_key(
    passphrase: &[u8],
    salt: &[u8],
    log_n: u8,
    what: &str,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let params =
        scrypt::Params::new(log_n, SCRYPT_R, SCRYPT_P, 32).map_err(|e| KeyError::Format {
            what: what.to_string(),
            why: format!("scrypt parameters: {e}"),
        })?;
    let mut out = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase, salt, &params, out.as_mut()).map_err(|e| KeyError::Format {
        what: what.to_string(),
        why: format!("scrypt: {e}"),
    })?;
    Ok(out)
}

impl PrivateKey {
    /// A new random key.
    pub fn generate() -> PrivateKey {
        PrivateKey {
            key: SigningKey::random(&mut OsRng),
        }
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
        }
    }

    /// The key file cosign writes: a PEM block labelled `label`
    /// ([`SIGSTORE_PEM_LABEL`] or [`COSIGN_PEM_LABEL`]) around the key
    /// encrypted under `passphrase`.
    pub fn to_encrypted_pem(&self, passphrase: &[u8], label: &str) -> Result<String, KeyError> {
        let what = "new key";
        let der = self.key.to_pkcs8_der().map_err(|e| KeyError::Format {
            what: what.into(),
            why: format!("PKCS#8: {e}"),
        })?;
        let mut salt = [0u8; 32];
        OsRng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let key = scrypt_key(passphrase, &salt, SCRYPT_LOG_N, what)?;
        let cipher = XSalsa20Poly1305::new(key.as_ref().into());
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), der.as_bytes())
            .map_err(|_| KeyError::Format {
                what: what.into(),
                why: "secretbox sealing failed".into(),
            })?;
        let doc = Encrypted {
            kdf: Kdf {
                name: "scrypt".into(),
                params: ScryptParams {
                    n: 1u64 << SCRYPT_LOG_N,
                    r: SCRYPT_R,
                    p: SCRYPT_P,
                },
                salt: B64.encode(salt),
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: B64.encode(nonce),
            },
            ciphertext: B64.encode(sealed),
        };
        let json = serde_json::to_vec(&doc).map_err(|e| KeyError::Format {
            what: what.into(),
            why: format!("serialising: {e}"),
        })?;
        pem_rfc7468::encode_string(label, LineEnding::LF, &json).map_err(|e| KeyError::Format {
            what: what.into(),
            why: format!("PEM: {e}"),
        })
    }

    /// Read a cosign key file (`what` names it in errors) with its
    /// passphrase. Only the scrypt parameters go-tuf has ever written
    /// (N = 2^15, 2^16 or 2^17, r = 8, p = 1) are accepted: others could
    /// make the derivation take any time or memory.
    pub fn from_encrypted_pem(
        pem: &[u8],
        passphrase: &[u8],
        what: &str,
    ) -> Result<PrivateKey, KeyError> {
        let bad = |why: String| KeyError::Format {
            what: what.to_string(),
            why,
        };
        let (label, body) =
            pem_rfc7468::decode_vec(pem).map_err(|e| bad(format!("not a PEM block: {e}")))?;
        if label != SIGSTORE_PEM_LABEL && label != COSIGN_PEM_LABEL {
            return Err(bad(format!(
                "PEM block {label:?}, not {SIGSTORE_PEM_LABEL:?} or {COSIGN_PEM_LABEL:?}"
            )));
        }
        let doc: Encrypted = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("encrypted key document: {e}")))?;
        if doc.kdf.name != "scrypt" {
            return Err(bad(format!(
                "key derivation {:?}, not scrypt",
                doc.kdf.name
            )));
        }
        if doc.cipher.name != "nacl/secretbox" {
            return Err(bad(format!(
                "cipher {:?}, not nacl/secretbox",
                doc.cipher.name
            )));
        }
        let log_n = match doc.kdf.params.n {
            32768 => 15,
            65536 => 16,
            131072 => 17,
            n => return Err(bad(format!("unsupported scrypt parameter N={n}"))),
        };
        if doc.kdf.params.r != SCRYPT_R || doc.kdf.params.p != SCRYPT_P {
            return Err(bad(format!(
                "unsupported scrypt parameters r={} p={}",
                doc.kdf.params.r, doc.kdf.params.p
            )));
        }
        let decode = |name: &str, s: &str| B64.decode(s).map_err(|e| bad(format!("{name}: {e}")));
        let salt = decode("salt", &doc.kdf.salt)?;
        let nonce = decode("nonce", &doc.cipher.nonce)?;
        let sealed = decode("ciphertext", &doc.ciphertext)?;
        if nonce.len() != 24 {
            return Err(bad(format!("nonce of {} bytes, not 24", nonce.len())));
        }
        let key = scrypt_key(passphrase, &salt, log_n, what)?;
        let cipher = XSalsa20Poly1305::new(key.as_ref().into());
        let der = Zeroizing::new(
            cipher
                .decrypt(Nonce::from_slice(&nonce), sealed.as_slice())
                .map_err(|_| KeyError::Decrypt(what.to_string()))?,
        );
        let key = SigningKey::from_pkcs8_der(&der).map_err(|e| KeyError::Unsupported {
            what: what.to_string(),
            why: format!("not an ECDSA P-256 PKCS#8 key ({e})"),
        })?;
        Ok(PrivateKey { key })
    }

    /// Sign `payload`: ECDSA P-256 over its SHA-256, ASN.1 DER, as
    /// sigstore's `ECDSASignerVerifier` does.
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(payload);
        sig.to_der().as_bytes().to_vec()
    }
}

impl PublicKey {
    /// The PKIX `PUBLIC KEY` PEM block.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Format {
                what: "public key".into(),
                why: format!("PEM: {e}"),
            })
    }

    /// Read a PKIX `PUBLIC KEY` PEM block (`what` names it in errors).
    pub fn from_pem(pem: &[u8], what: &str) -> Result<PublicKey, KeyError> {
        let text = std::str::from_utf8(pem).map_err(|_| KeyError::Format {
            what: what.to_string(),
            why: "not a PEM file (not UTF-8)".into(),
        })?;
        let (label, der) =
            pem_rfc7468::decode_vec(text.trim().as_bytes()).map_err(|e| KeyError::Format {
                what: what.to_string(),
                why: format!("not a PEM block: {e}"),
            })?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::Format {
                what: what.to_string(),
                why: format!("PEM block {label:?}, not \"PUBLIC KEY\""),
            });
        }
        let key = VerifyingKey::from_public_key_der(&der).map_err(|e| KeyError::Unsupported {
            what: what.to_string(),
            why: format!("not an ECDSA P-256 public key ({e})"),
        })?;
        Ok(PublicKey { key })
    }

    /// Check `sig` (DER, as [`PrivateKey::sign`] makes and Go's
    /// `ecdsa.VerifyASN1` reads) over `payload`.
    pub fn verify(&self, payload: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        let der = DerSignature::from_bytes(sig)
            .map_err(|_| KeyError::BadSignature("not a DER ECDSA signature".into()))?;
        let sig = Signature::from_der(der.as_bytes())
            .map_err(|_| KeyError::BadSignature("not a DER ECDSA signature".into()))?;
        self.key.verify(payload, &sig).map_err(|_| {
            KeyError::BadSignature("the signature does not verify with this key".into())
        })
    }
}

/// A new key pair: the encrypted private key file's text (PEM labelled
/// `label`) and the public key's.
pub fn generate(passphrase: &[u8], label: &str) -> Result<(String, String), KeyError> {
    let key = PrivateKey::generate();
    Ok((
        key.to_encrypted_pem(passphrase, label)?,
        key.public().to_pem()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let (private, public) = generate(b"secret", SIGSTORE_PEM_LABEL).expect("generate");
        assert!(private.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let key = PrivateKey::from_encrypted_pem(private.as_bytes(), b"secret", "k").expect("open");
        let pubkey = PublicKey::from_pem(public.as_bytes(), "p").expect("public");
        assert_eq!(key.public(), pubkey);
        let sig = key.sign(b"payload");
        pubkey.verify(b"payload", &sig).expect("verifies");
        assert!(pubkey.verify(b"payloaD", &sig).is_err());
        let e = PrivateKey::from_encrypted_pem(private.as_bytes(), b"wrong", "k.key")
            .expect_err("wrong");
        assert!(matches!(e, KeyError::Decrypt(_)), "{e}");
    }

    #[test]
    fn refuses_expensive_scrypt() {
        let (private, _) = generate(b"", COSIGN_PEM_LABEL).expect("generate");
        let (label, body) = pem_rfc7468::decode_vec(private.as_bytes()).expect("pem");
        let text = String::from_utf8(body)
            .expect("utf-8")
            .replace("32768", "1073741824");
        let pem = pem_rfc7468::encode_string(label, LineEnding::LF, text.as_bytes()).expect("pem");
        let e = PrivateKey::from_encrypted_pem(pem.as_bytes(), b"", "k").expect_err("refused");
        assert!(e.to_string().contains("N=1073741824"), "{e}");
    }
}
