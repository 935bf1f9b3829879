// Command mtree-check validates a root filesystem against an mtree manifest
// with Debian's go-mtree library (the implementation umoci uses), the way
// `gomtree validate` does: every difference is printed and the exit status
// is 1 if there is any.
//
// Usage: mtree-check SPEC ROOT
package main

import (
	"fmt"
	"os"

	"github.com/vbatts/go-mtree"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: mtree-check SPEC ROOT")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	dh, err := mtree.ParseSpec(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parse:", err)
		os.Exit(2)
	}
	keywords := dh.UsedKeywords()
	deltas, err := mtree.Check(os.Args[2], dh, keywords, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "check:", err)
		os.Exit(2)
	}
	for _, d := range deltas {
		fmt.Println(d.String())
	}
	if len(deltas) > 0 {
		fmt.Printf("%d differences\n", len(deltas))
		os.Exit(1)
	}
	fmt.Printf("ok: %d keywords checked\n", len(keywords))
}
