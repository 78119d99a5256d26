//! Test support (unit tests, and the integration tests with the `test-support` feature): an
//! in-process Kubernetes API server that lists and watches as the real one does, and
//! objects shaped as `kubectl get -o json` prints them.
pub mod fake_api;
pub mod objects;
pub mod synthetic;

pub use fake_api::FakeApi;
