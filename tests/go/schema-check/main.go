// Command schema-check validates an OCI JSON document against the image-spec
// JSON schemas shipped by Debian (golang-github-opencontainers-image-spec-dev).
// Usage: schema-check manifest|index|config|layout FILE
package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/opencontainers/image-spec/schema"
)

func main() {
	kinds := map[string]schema.Validator{
		"manifest": schema.ValidatorMediaTypeManifest,
		"index":    schema.ValidatorMediaTypeImageIndex,
		"config":   schema.ValidatorMediaTypeImageConfig,
		"layout":   schema.ValidatorMediaTypeLayoutHeader,
	}
	v, ok := kinds[os.Args[1]]
	if !ok {
		fmt.Println("unknown kind")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	if err := v.Validate(bytes.NewReader(data)); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
