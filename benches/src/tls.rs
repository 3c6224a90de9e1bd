//! TLS between bench nodes: a certificate authority and a certificate for
//! `127.0.0.1` made when the bench starts (rcgen, files in the system temp
//! directory), a node serving TLS with them (`enable_thrift_ssl`,
//! `key_store_path`), and the connector attributes and client sessions
//! that trust that CA. The replication bench runs its pipes over it beside
//! plain TCP.

use std::path::{Path, PathBuf};

use node::client::ClientTls;

use crate::cluster::Server;

/// One bench run's certificates, as files (deleted on drop).
pub struct Pki {
    /// Holds the files.
    _dir: tempfile::TempDir,
    /// The CA certificate (PEM): a connector's trust store.
    ca: PathBuf,
    /// The node's certificate chain and key (PEM): `key_store_path`.
    key_store: PathBuf,
    /// A client trusting the CA.
    client: ClientTls,
}

impl Pki {
    /// A new CA and a certificate it signed for `127.0.0.1`.
    ///
    /// # Panics
    /// When the files cannot be written.
    pub fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&ca_key).expect("CA");
        let issuer = rcgen::Issuer::new(params, ca_key);
        let key = rcgen::KeyPair::generate().expect("node key");
        let node = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("node params")
            .signed_by(&key, &issuer)
            .expect("node certificate");
        let dir = tempfile::Builder::new()
            .prefix("bench-pki")
            .tempdir()
            .expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).expect("write CA");
        let key_store = dir.path().join("node.pem");
        std::fs::write(&key_store, format!("{}{}", node.pem(), key.serialize_pem()))
            .expect("write key store");
        Pki {
            client: ClientTls::from_trust_store(&ca, "").expect("trust the CA"),
            _dir: dir,
            ca,
            key_store,
        }
    }

    /// Starts [`Server::start`]'s server serving TLS only; its
    /// [`Server::exec`] connects with TLS.
    pub fn start(&self, dir: &Path, port: u16, config: &[String]) -> Server {
        let mut config = config.to_vec();
        config.push("enable_thrift_ssl=true".into());
        config.push(format!("key_store_path={}", self.key_store.display()));
        let mut s = Server::start(dir, port, &config);
        s.tls = Some(self.client.clone());
        s
    }

    /// The connector attributes that connect with TLS trusting the CA:
    /// `, 'connector.ssl.enable'='true', 'connector.ssl.trust-store-path'=…`.
    pub fn connector_attrs(&self) -> String {
        format!(
            ", 'connector.ssl.enable'='true', 'connector.ssl.trust-store-path'='{}'",
            self.ca.display()
        )
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}
