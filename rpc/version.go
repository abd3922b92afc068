package rpc

// Version is the release of ckd and ckctl, which ship together. ckd reports
// it in /v1/status; ckctl --version prints it. Set at build time with
// -ldflags "-X github.com/cloudknowledge/ck/rpc.Version=...".
var Version = "0.1.0-dev"
