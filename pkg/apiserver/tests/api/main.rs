//! Integration tests against a real server on 127.0.0.1 (one test binary, many modules).

mod apply;
mod common;
mod crd;
mod crud;
mod etcd;
mod events;
mod kube_client;
mod lists;
mod namespaces;
mod nonresource;
mod openapi_v2;
mod proxy;
mod restart;
mod watch;
