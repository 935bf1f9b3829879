// A small `skopeo copy` on containers/image 5.23 (see README.md):
//
//	cimage-sigstore copy --policy P [--registries.d D]
//	    [--sign-by-sigstore-private-key K --sign-passphrase-file F]
//	    [--sign-identity REF] [--remove-signatures] SRC DST
//
// SRC and DST are docker://HOST/REPO:TAG or oci:DIR:TAG; registries are
// reached over plain HTTP (tls-verify=false, as skopeo's flags say).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/containers/image/v5/copy"
	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/oci/layout"
	"github.com/containers/image/v5/signature"
	"github.com/containers/image/v5/types"
)

func parse(name string) (types.ImageReference, error) {
	switch {
	case strings.HasPrefix(name, "docker:"):
		return docker.Transport.ParseReference(strings.TrimPrefix(name, "docker:"))
	case strings.HasPrefix(name, "oci:"):
		return layout.Transport.ParseReference(strings.TrimPrefix(name, "oci:"))
	}
	return nil, fmt.Errorf("unsupported image name %q", name)
}

func run() error {
	if len(os.Args) < 2 || os.Args[1] != "copy" {
		return errors.New("usage: cimage-sigstore copy [flags] SRC DST")
	}
	fs := flag.NewFlagSet("copy", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy.json")
	regd := fs.String("registries.d", "", "registries.d directory")
	key := fs.String("sign-by-sigstore-private-key", "", "private key")
	passFile := fs.String("sign-passphrase-file", "", "passphrase file")
	identity := fs.String("sign-identity", "", "identity")
	removeSignatures := fs.Bool("remove-signatures", false, "do not copy signatures")
	if err := fs.Parse(os.Args[2:]); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("need SRC and DST")
	}
	src, err := parse(fs.Arg(0))
	if err != nil {
		return err
	}
	dst, err := parse(fs.Arg(1))
	if err != nil {
		return err
	}
	policy, err := signature.NewPolicyFromFile(*policyPath)
	if err != nil {
		return err
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return err
	}
	defer pc.Destroy()
	sys := &types.SystemContext{
		RegistriesDirPath:           *regd,
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
	}
	opts := &copy.Options{
		SourceCtx:        sys,
		DestinationCtx:   sys,
		ReportWriter:     os.Stdout,
		RemoveSignatures: *removeSignatures,
	}
	if *key != "" {
		opts.SignBySigstorePrivateKeyFile = *key
		if *passFile != "" {
			f, err := os.Open(*passFile)
			if err != nil {
				return err
			}
			line, err := bufio.NewReader(f).ReadString('\n')
			f.Close()
			if err != nil && line == "" && !errors.Is(err, os.ErrClosed) && err.Error() != "EOF" {
				return err
			}
			opts.SignSigstorePrivateKeyPassphrase = []byte(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"))
		}
	}
	if *identity != "" {
		named, err := reference.ParseNormalizedNamed(*identity)
		if err != nil {
			return err
		}
		opts.SignIdentity = named
	}
	_, err = copy.Image(context.Background(), pc, dst, src, opts)
	return err
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "cimage-sigstore: %v\n", err)
		os.Exit(1)
	}
}
