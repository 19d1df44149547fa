//! Nothing but tests: `tests/manifests.rs` renders `deploy/kubernetes/` with
//! `kubectl kustomize` and reads every object into the Kubernetes API's own
//! types (k8s-openapi), kept out of the other crates' builds.
