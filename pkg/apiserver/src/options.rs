//! Command-line options of the API server, shared by `kubelite-apiserver` and
//! `kubelite apiserver` so both take exactly the same flags.

use std::net::SocketAddr;

use crate::{Config, StorageConfig};

/// The kubelite Kubernetes API server.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// `embedded:<dir>`; ignored when --etcd-servers is set.
    #[arg(long, default_value = "embedded:./kubelite-data")]
    pub storage: StorageConfig,
    /// Comma-separated etcd client URLs; selects the etcd backend.
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// Prefix for every key in etcd.
    #[arg(long, default_value = "")]
    pub etcd_prefix: String,
    /// CIDR Service ClusterIPs are allocated from.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// Delete a terminating namespace's content in the server itself; pass `false` when a
    /// controller-manager (with its namespace controller) runs against this server.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub namespace_content_deletion: bool,
}

impl Options {
    /// The server configuration these flags describe.
    pub fn into_config(self) -> Config {
        let storage = if self.etcd_servers.is_empty() {
            self.storage
        } else {
            StorageConfig::Etcd {
                endpoints: self.etcd_servers,
                prefix: self.etcd_prefix,
            }
        };
        Config {
            listen: self.listen,
            storage,
            service_cluster_ip_range: self.service_cluster_ip_range,
            namespace_content_deletion: self.namespace_content_deletion,
            ..Config::default()
        }
    }
}
