//! UPnP IGD through `igd-next`: SSDP search, the device and service descriptions, and the
//! `WANIPConnection` SOAP actions (`AddPortMapping`, `DeletePortMapping`,
//! `GetExternalIPAddress`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use igd_next::aio::tokio::Tokio;
use igd_next::{PortMappingProtocol, SearchOptions};

use super::{Gateway, Granted, PortRequest, Transport};
use crate::config::NatConfig;

/// A router that answered an SSDP search.
pub struct Upnp {
    gateway: igd_next::aio::Gateway<Tokio>,
    /// Our address on the router's network (where it forwards to).
    local_ip: IpAddr,
}

impl Upnp {
    /// Searches with SSDP at `config.discovery`.
    pub async fn discover(config: &NatConfig) -> anyhow::Result<Upnp> {
        let mut options = SearchOptions::default();
        options.broadcast_address = config.discovery;
        options.timeout = Some(config.timeout);
        options.single_search_timeout = Some(config.timeout);
        // A router named by its own address is trusted at that address (igd-next otherwise
        // refuses a description URL on loopback, as a LAN device pointing there would be odd).
        if !config.discovery.ip().is_multicast() {
            options.allowed_gateway_ips = vec![config.discovery.ip()];
        }
        let gateway = igd_next::aio::tokio::search_gateway(options)
            .await
            .context("SSDP search")?;
        let local_ip = local_ip_towards(gateway.addr).await?;
        Ok(Upnp { gateway, local_ip })
    }
}

/// The local address the kernel would use to reach `peer` (no packet is sent).
pub async fn local_ip_towards(peer: SocketAddr) -> anyhow::Result<IpAddr> {
    let unspecified: SocketAddr = match peer {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let probe = tokio::net::UdpSocket::bind(unspecified).await?;
    probe
        .connect(peer)
        .await
        .with_context(|| format!("no route to the router at {peer}"))?;
    Ok(probe.local_addr()?.ip())
}

fn protocol(transport: Transport) -> PortMappingProtocol {
    match transport {
        Transport::Tcp => PortMappingProtocol::TCP,
        Transport::Udp => PortMappingProtocol::UDP,
    }
}

#[async_trait]
impl Gateway for Upnp {
    fn method(&self) -> &'static str {
        "upnp"
    }

    fn address(&self) -> IpAddr {
        self.gateway.addr.ip()
    }

    /// Asks for the same external port as the local one (what LBRY clients are told).
    async fn map(&mut self, request: &PortRequest, lease: Duration) -> anyhow::Result<Granted> {
        let local = SocketAddr::new(self.local_ip, request.port);
        let seconds = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX).max(1);
        let description = format!("prism-lite {}", request.purpose);
        self.gateway
            .add_port(
                protocol(request.transport),
                request.port,
                local,
                seconds,
                &description,
            )
            .await
            .with_context(|| format!("AddPortMapping {} {}", request.purpose, request.port))?;
        Ok(Granted {
            external_port: request.port,
            lease: Duration::from_secs(seconds.into()),
        })
    }

    async fn unmap(&mut self, request: &PortRequest) -> anyhow::Result<()> {
        self.gateway
            .remove_port(protocol(request.transport), request.port)
            .await
            .with_context(|| format!("DeletePortMapping {}", request.port))
    }

    async fn external_ip(&mut self) -> anyhow::Result<IpAddr> {
        Ok(self
            .gateway
            .get_external_ip()
            .await
            .context("GetExternalIPAddress")?)
    }
}
