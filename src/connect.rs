//! Opening the API a command talks to: the in-process mock server (`--mock`) or a real base
//! URL with the key, as one [`Connection`] that owns the mock for as long as it is needed.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::client::{ApiKey, Client, ClientConfig};
use crate::config::Target;
use crate::mock::{MockConfig, MockServer};

/// Headers and timeouts for the client, beyond the target.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub timeout: Option<Duration>,
    pub app_url: Option<String>,
    pub app_title: Option<String>,
}

/// A client, and the mock server behind it when there is one.
pub struct Connection {
    pub client: Client,
    mock: Option<MockServer>,
}

/// The key the in-process mock accepts.
const MOCK_KEY: &str = "mock-key";
/// The in-process mock's management key (so that the mock key is an ordinary one).
const MOCK_MANAGEMENT_KEY: &str = "mock-management-key";
/// The default timeout for commands that do not set one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Connection {
    /// Connect to `target`; for `Target::Mock`, start a mock server with `mock_config` on a
    /// free loopback port first.
    pub async fn open(
        target: &Target,
        options: ClientOptions,
        mock_config: MockConfig,
    ) -> anyhow::Result<Connection> {
        let (mock, base_url, key, headers) = match target {
            Target::Mock => {
                let mut mock_config = mock_config;
                mock_config
                    .management_key
                    .get_or_insert_with(|| MOCK_MANAGEMENT_KEY.to_owned());
                let server =
                    MockServer::start(mock_config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                        .await?;
                let url = server.base_url();
                (Some(server), url, Some(ApiKey::new(MOCK_KEY)), Vec::new())
            }
            Target::Remote {
                base_url,
                key,
                headers,
            } => (None, base_url.clone(), key.clone(), headers.clone()),
        };
        let client = Client::new(&ClientConfig {
            base_url,
            key,
            timeout: options.timeout.unwrap_or(DEFAULT_TIMEOUT),
            app_url: options.app_url,
            app_title: options.app_title,
            headers,
        })?;
        Ok(Connection { client, mock })
    }

    /// Stop the mock server, if any.
    pub async fn close(self) {
        if let Some(server) = self.mock {
            server.shutdown().await;
        }
    }
}
