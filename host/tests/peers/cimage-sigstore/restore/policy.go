package signature

// Restored for the test peer (see README.md): upstream containers/image
// 5.23's prSigstoreSigned.isSignatureAccepted, with sigstore's
// cryptoutils.UnmarshalPEMToPublicKey written out (PEM, PKIX).

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"crypto/x509"
	"github.com/containers/image/v5/internal/private"
	"github.com/containers/image/v5/internal/signature"
	"github.com/containers/image/v5/manifest"
	"github.com/containers/image/v5/signature/internal"
	digest "github.com/opencontainers/go-digest"
)

func (pr *prSigstoreSigned) isSignatureAcceptedRestored(ctx context.Context, image private.UnparsedImage, sig signature.Sigstore) (signatureAcceptanceResult, error) {
	if pr.KeyPath != "" && pr.KeyData != nil {
		return sarRejected, errors.New(`Internal inconsistency: both "keyPath" and "keyData" specified`)
	}
	var publicKeyPEM []byte
	if pr.KeyData != nil {
		publicKeyPEM = pr.KeyData
	} else {
		d, err := os.ReadFile(pr.KeyPath)
		if err != nil {
			return sarRejected, err
		}
		publicKeyPEM = d
	}
	block, _ := pem.Decode(publicKeyPEM)
	if block == nil {
		return sarRejected, errors.New("parsing public key: PEM decoding failed")
	}
	publicKey, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return sarRejected, fmt.Errorf("parsing public key: %w", err)
	}

	untrustedAnnotations := sig.UntrustedAnnotations()
	untrustedBase64Signature, ok := untrustedAnnotations[signature.SigstoreSignatureAnnotationKey]
	if !ok {
		return sarRejected, fmt.Errorf("missing %s annotation", signature.SigstoreSignatureAnnotationKey)
	}

	signature, err := internal.VerifySigstorePayload(publicKey, sig.UntrustedPayload(), untrustedBase64Signature, internal.SigstorePayloadAcceptanceRules{
		ValidateSignedDockerReference: func(ref string) error {
			if !pr.SignedIdentity.matchesDockerReference(image, ref) {
				return PolicyRequirementError(fmt.Sprintf("Signature for identity %s is not accepted", ref))
			}
			return nil
		},
		ValidateSignedDockerManifestDigest: func(digest digest.Digest) error {
			m, _, err := image.Manifest(ctx)
			if err != nil {
				return err
			}
			digestMatches, err := manifest.MatchesDigest(m, digest)
			if err != nil {
				return err
			}
			if !digestMatches {
				return PolicyRequirementError(fmt.Sprintf("Signature for digest %s does not match", digest))
			}
			return nil
		},
	})
	if err != nil {
		return sarRejected, err
	}
	if signature == nil {
		return sarRejected, errors.New("internal error: VerifySigstorePayload succeeded but returned no data")
	}
	return sarAccepted, nil
}
