//! PCP (RFC 6887), falling back to NAT-PMP (RFC 6886), through `crab_nat`: one UDP exchange
//! per operation with the router on port 5351, with the RFCs' retry timing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use crab_nat::{InternetProtocol, PortMapping, PortMappingOptions, PortMappingType, TimeoutConfig};

use super::{Gateway, Granted, PortRequest, Transport};
use crate::config::NatConfig;

/// The router at `nat.gateway` (or the default route's gateway).
pub struct Pmp {
    gateway: IpAddr,
    timeouts: TimeoutConfig,
    /// Held mappings by local port and transport, for renewing and removing.
    held: HashMap<(Transport, u16), PortMapping>,
    /// The external address PCP reported with a mapping (NAT-PMP asks separately).
    pcp_external: Option<IpAddr>,
}

impl Pmp {
    pub fn new(config: &NatConfig) -> anyhow::Result<Pmp> {
        let gateway = match config.gateway {
            Some(ip) => ip,
            None => default_gateway()?,
        };
        Ok(Pmp {
            gateway,
            timeouts: TimeoutConfig {
                initial_timeout: Duration::from_millis(250),
                max_retries: 3,
                max_retry_timeout: Some(config.timeout),
            },
            held: HashMap::new(),
            pcp_external: None,
        })
    }
}

/// The IPv4 gateway of the default route.
fn default_gateway() -> anyhow::Result<IpAddr> {
    let device =
        netdev::get_default_gateway().map_err(|e| anyhow::anyhow!("no default gateway: {e}"))?;
    device
        .ipv4
        .first()
        .map(|ip| IpAddr::V4(*ip))
        .context("the default gateway has no IPv4 address")
}

fn protocol(transport: Transport) -> InternetProtocol {
    match transport {
        Transport::Tcp => InternetProtocol::Tcp,
        Transport::Udp => InternetProtocol::Udp,
    }
}

#[async_trait]
impl Gateway for Pmp {
    fn method(&self) -> &'static str {
        "natpmp"
    }

    fn address(&self) -> IpAddr {
        self.gateway
    }

    async fn map(&mut self, request: &PortRequest, lease: Duration) -> anyhow::Result<Granted> {
        let key = (request.transport, request.port);
        if let Some(mapping) = self.held.get_mut(&key) {
            mapping.renew().await.context("renewing")?;
            return Ok(granted(mapping));
        }
        let port = NonZeroU16::new(request.port).context("port 0 cannot be mapped")?;
        let client = super::upnp::local_ip_towards((self.gateway, 5351).into()).await?;
        let options = PortMappingOptions {
            external_port: Some(port),
            lifetime_seconds: Some(u32::try_from(lease.as_secs()).unwrap_or(u32::MAX)),
            timeout_config: Some(self.timeouts),
        };
        let mapping = PortMapping::new(
            self.gateway.into(),
            client,
            protocol(request.transport),
            port,
            options,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let PortMappingType::Pcp { external_ip, .. } = mapping.mapping_type() {
            self.pcp_external = Some(external_ip);
        }
        let granted = granted(&mapping);
        self.held.insert(key, mapping);
        Ok(granted)
    }

    async fn unmap(&mut self, request: &PortRequest) -> anyhow::Result<()> {
        let Some(mapping) = self.held.remove(&(request.transport, request.port)) else {
            return Ok(());
        };
        mapping
            .try_drop()
            .await
            .map_err(|(e, _)| anyhow::anyhow!("{e}"))
    }

    async fn external_ip(&mut self) -> anyhow::Result<IpAddr> {
        if let Some(ip) = self.pcp_external {
            return Ok(ip);
        }
        let ip = crab_nat::natpmp::external_address(self.gateway.into(), Some(self.timeouts))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(IpAddr::V4(ip))
    }
}

fn granted(mapping: &PortMapping) -> Granted {
    Granted {
        external_port: mapping.external_port().get(),
        lease: Duration::from_secs(mapping.lifetime().into()),
    }
}
