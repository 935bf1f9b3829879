package sigstore

// Restored for the test peer (see README.md): upstream containers/image
// 5.23's SignDockerManifestWithPrivateKeyFileUnstable with loadPrivateKey
// (copied.go: cosign's PEM type and go-tuf's encrypted.Decrypt) and
// sigstore's ECDSA signer written out.

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/internal/signature"
	"github.com/containers/image/v5/manifest"
	"github.com/containers/image/v5/signature/internal"
	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

const cosignPrivateKeyPemType = "ENCRYPTED COSIGN PRIVATE KEY"

// go-tuf's encrypted.Decrypt as go-tuf 0.x (containers/image 5.23's) has it.
func tufDecrypt(ciphertext, passphrase []byte) ([]byte, error) {
	var data struct {
		KDF struct {
			Name   string `json:"name"`
			Params struct {
				N int `json:"N"`
				R int `json:"r"`
				P int `json:"p"`
			} `json:"params"`
			Salt []byte `json:"salt"`
		} `json:"kdf"`
		Cipher struct {
			Name  string `json:"name"`
			Nonce []byte `json:"nonce"`
		} `json:"cipher"`
		Ciphertext []byte `json:"ciphertext"`
	}
	if err := json.Unmarshal(ciphertext, &data); err != nil {
		return nil, err
	}
	if data.KDF.Name != "scrypt" {
		return nil, fmt.Errorf("encrypted: unknown kdf name %q", data.KDF.Name)
	}
	if data.Cipher.Name != "nacl/secretbox" {
		return nil, fmt.Errorf("encrypted: unknown cipher name %q", data.Cipher.Name)
	}
	if data.KDF.Params.N != 32768 || data.KDF.Params.R != 8 || data.KDF.Params.P != 1 {
		return nil, errors.New("encrypted: unexpected kdf parameters")
	}
	key, err := scrypt.Key(passphrase, data.KDF.Salt, data.KDF.Params.N, data.KDF.Params.R, data.KDF.Params.P, 32)
	if err != nil {
		return nil, err
	}
	var keyBytes [32]byte
	var nonceBytes [24]byte
	if len(data.Cipher.Nonce) != len(nonceBytes) {
		return nil, errors.New("encrypted: incorrect nonce size")
	}
	copy(keyBytes[:], key)
	copy(nonceBytes[:], data.Cipher.Nonce)
	res, ok := secretbox.Open(nil, data.Ciphertext, &nonceBytes, &keyBytes)
	if !ok {
		return nil, errors.New("encrypted: decryption failed")
	}
	return res, nil
}

func loadPrivateKeyRestored(key []byte, pass []byte) (*ecdsa.PrivateKey, error) {
	p, _ := pem.Decode(key)
	if p == nil {
		return nil, errors.New("invalid pem block")
	}
	if p.Type != cosignPrivateKeyPemType {
		return nil, fmt.Errorf("unsupported pem type: %s", p.Type)
	}
	x509Encoded, err := tufDecrypt(p.Bytes, pass)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	pk, err := x509.ParsePKCS8PrivateKey(x509Encoded)
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	ec, ok := pk.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("unsupported key type")
	}
	return ec, nil
}

func signRestored(m []byte, dockerReference reference.Named, privateKeyFile string, passphrase []byte) (signature.Sigstore, error) {
	privateKeyPEM, err := os.ReadFile(privateKeyFile)
	if err != nil {
		return signature.Sigstore{}, fmt.Errorf("reading private key from %s: %w", privateKeyFile, err)
	}
	signer, err := loadPrivateKeyRestored(privateKeyPEM, passphrase)
	if err != nil {
		return signature.Sigstore{}, fmt.Errorf("initializing private key: %w", err)
	}
	if reference.IsNameOnly(dockerReference) {
		return signature.Sigstore{}, fmt.Errorf("reference %s can’t be signed, it has neither a tag nor a digest", dockerReference.String())
	}
	manifestDigest, err := manifest.Digest(m)
	if err != nil {
		return signature.Sigstore{}, err
	}
	payloadData := internal.NewUntrustedSigstorePayload(manifestDigest, dockerReference.String())
	payloadBytes, err := json.Marshal(payloadData)
	if err != nil {
		return signature.Sigstore{}, err
	}
	digest := sha256.Sum256(payloadBytes)
	signatureBytes, err := ecdsa.SignASN1(rand.Reader, signer, digest[:])
	if err != nil {
		return signature.Sigstore{}, fmt.Errorf("creating signature: %w", err)
	}
	base64Signature := base64.StdEncoding.EncodeToString(signatureBytes)
	return signature.SigstoreFromComponents(signature.SigstoreSignatureMIMEType,
		payloadBytes,
		map[string]string{
			signature.SigstoreSignatureAnnotationKey: base64Signature,
		}), nil
}
