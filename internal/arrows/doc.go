// Package arrows holds no code: its test checks that imports between xlb's
// packages point the one way docs/architecture.md draws them,
// cmd -> hcl/plugins/elements -> control -> pipeline, so that a wrong
// import fails `make test` instead of being found in review.
package arrows
