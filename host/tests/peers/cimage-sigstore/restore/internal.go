package internal

// Restored for the test peer (see README.md): upstream containers/image
// 5.23's VerifySigstorePayload, with sigstore's ECDSA verifier written out.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

func verifySigstorePayloadRestored(publicKey crypto.PublicKey, unverifiedPayload []byte, unverifiedBase64Signature string, rules SigstorePayloadAcceptanceRules) (*UntrustedSigstorePayload, error) {
	pub, ok := publicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("creating verifier: unsupported public key type %T", publicKey)
	}
	unverifiedSignature, err := base64.StdEncoding.DecodeString(unverifiedBase64Signature)
	if err != nil {
		return nil, NewInvalidSignatureError(fmt.Sprintf("base64 decoding: %v", err))
	}
	digest := sha256.Sum256(unverifiedPayload)
	if !ecdsa.VerifyASN1(pub, digest[:], unverifiedSignature) {
		return nil, NewInvalidSignatureError("cryptographic signature verification failed: invalid signature when validating ASN.1 encoded signature")
	}
	var unmatchedPayload UntrustedSigstorePayload
	if err := json.Unmarshal(unverifiedPayload, &unmatchedPayload); err != nil {
		return nil, NewInvalidSignatureError(err.Error())
	}
	if err := rules.ValidateSignedDockerManifestDigest(unmatchedPayload.UntrustedDockerManifestDigest); err != nil {
		return nil, err
	}
	if err := rules.ValidateSignedDockerReference(unmatchedPayload.UntrustedDockerReference); err != nil {
		return nil, err
	}
	return &unmatchedPayload, nil
}
