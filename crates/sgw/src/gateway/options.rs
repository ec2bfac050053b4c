//! How the legacy adapter is offered, from the configuration. It lives here,
//! not in `transport::legacy`, so that the adapter knows nothing of the
//! config file and every default stays in `config`.

use std::time::Duration;

use crate::config::{Config, GatewayConfig, LegacyMode, RegistrationConfig};
use crate::transport::legacy::{DedicatedSocket, LegacyOptions, Relay};
use crate::transport::socket::{BindOptions, SocketError};

impl LegacyOptions {
    /// Detection on the main socket at `ipc_path`, the configuration's
    /// default limits, no relay.
    pub fn new(ipc_path: impl Into<String>) -> Self {
        Self::with_limits(
            &GatewayConfig::default(),
            &RegistrationConfig::default(),
            ipc_path,
        )
    }

    fn with_limits(
        gateway: &GatewayConfig,
        relay: &RegistrationConfig,
        ipc_path: impl Into<String>,
    ) -> Self {
        Self {
            same_socket: true,
            dedicated: None,
            max_frame_bytes: gateway.legacy_max_line_bytes(),
            idle_timeout: gateway.idle_timeout,
            write_timeout: gateway.write_timeout,
            ipc_path: ipc_path.into(),
            relay: relay.relay_socket.clone().map(|socket| Relay {
                socket,
                interval: relay.heartbeat_interval,
            }),
            lease: Duration::from_secs(relay.lease_seconds),
        }
    }

    /// The options `config` asks for, binding the dedicated socket if there
    /// is one. `main_socket` is the path the gateway serves on. Must run
    /// inside a tokio runtime.
    pub fn from_config(config: &Config, main_socket: &str) -> Result<Self, SocketError> {
        let gateway = &config.gateway;
        let mut options = Self::with_limits(gateway, &config.registration, main_socket);
        match &gateway.legacy {
            LegacyMode::SameSocket => {}
            LegacyMode::Off => options.same_socket = false,
            LegacyMode::Dedicated(path) => {
                let dedicated = DedicatedSocket::bind(&BindOptions {
                    path: path.clone(),
                    mode: gateway.socket_mode,
                    bind: gateway.bind,
                    setting: "[gateway] legacy path",
                })?;
                // A relay should send legacy clients where only legacy is spoken.
                options.ipc_path = path.display().to_string();
                options.dedicated = Some(dedicated);
            }
        }
        Ok(options)
    }
}
