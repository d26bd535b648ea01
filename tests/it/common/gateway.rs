//! A stand-in home router (a real one cannot run here: miniupnpd refuses the addresses a test
//! network has), speaking the real wire formats: SSDP answers, the UPnP IGD device and
//! `WANIPConnection` service descriptions, its SOAP control actions, and NAT-PMP (RFC 6886),
//! answering PCP requests with NAT-PMP's "unsupported version" as a NAT-PMP-only router does.
//! Every request it gets is recorded, so tests see what the cache asked.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;

/// The external address the stand-in reports (TEST-NET-3).
pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

const SERVICE: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";

/// What the router was asked, in order: (`upnp` or `natpmp`, action, detail).
pub type Requests = Arc<Mutex<Vec<(String, String, String)>>>;

pub struct Gateway {
    /// Where SSDP searches go (`nat.discovery`).
    pub ssdp: SocketAddr,
    /// The NAT-PMP address (`nat.gateway`; the port is always 5351).
    pub natpmp: Ipv4Addr,
    pub requests: Requests,
    _tasks: JoinSet<()>,
}

impl Gateway {
    /// Starts a router whose UPnP and NAT-PMP services accept (or, with `refuse`, refuse
    /// every mapping: SOAP fault 718, NAT-PMP result 2 "not authorized").
    pub async fn start(refuse: bool) -> Gateway {
        let requests: Requests = Arc::default();
        let mut tasks = JoinSet::new();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        tasks.spawn(serve_upnp(http, Arc::clone(&requests), refuse));
        let ssdp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ssdp_addr = ssdp.local_addr().unwrap();
        tasks.spawn(answer_ssdp(ssdp, http_addr, Arc::clone(&requests)));
        let (natpmp, socket) = bind_natpmp().await;
        tasks.spawn(answer_natpmp(socket, Arc::clone(&requests), refuse));
        Gateway {
            ssdp: ssdp_addr,
            natpmp,
            requests,
            _tasks: tasks,
        }
    }

    /// The recorded requests of one method.
    pub fn asked(&self, method: &str) -> Vec<(String, String)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _, _)| m == method)
            .map(|(_, action, detail)| (action.clone(), detail.clone()))
            .collect()
    }
}

/// NAT-PMP's port is fixed (5351), so each router takes its own loopback address.
async fn bind_natpmp() -> (Ipv4Addr, UdpSocket) {
    for _ in 0..64 {
        let ip = Ipv4Addr::new(127, 53, fastrand::u8(1..255), fastrand::u8(1..255));
        if let Ok(socket) = UdpSocket::bind((ip, 5351)).await {
            return (ip, socket);
        }
    }
    panic!("no free 127.53.x.y:5351 for the stand-in NAT-PMP router");
}

async fn answer_ssdp(socket: UdpSocket, http: SocketAddr, requests: Requests) {
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        let search = String::from_utf8_lossy(&buf[..n]).to_string();
        if !search.starts_with("M-SEARCH * HTTP/1.1") {
            continue;
        }
        let target = search
            .lines()
            .find_map(|l| l.strip_prefix("ST:").or_else(|| l.strip_prefix("St:")))
            .unwrap_or("")
            .trim()
            .to_owned();
        requests
            .lock()
            .unwrap()
            .push(("upnp".into(), "M-SEARCH".into(), target.clone()));
        let answer = format!(
            "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: {target}\r\n\
             USN: uuid:prism-test-gateway::{target}\r\nEXT:\r\nSERVER: Linux UPnP/1.1 test/1.0\r\n\
             LOCATION: http://{http}/rootDesc.xml\r\n\r\n"
        );
        let _ = socket.send_to(answer.as_bytes(), from).await;
    }
}

async fn serve_upnp(listener: TcpListener, requests: Requests, refuse: bool) {
    while let Ok((socket, _)) = listener.accept().await {
        let requests = Arc::clone(&requests);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<_>| {
                let requests = Arc::clone(&requests);
                async move {
                    let path = req.uri().path().to_owned();
                    let action = req
                        .headers()
                        .get("soapaction")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .trim_matches('"')
                        .rsplit('#')
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let body = BodyExt::collect(req.into_body())
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let (status, text) = upnp_answer(&path, &action, &body, &requests, refuse);
                    let mut response = Response::new(Full::new(Bytes::from(text)));
                    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                    response.headers_mut().insert(
                        "content-type",
                        hyper::header::HeaderValue::from_static("text/xml; charset=\"utf-8\""),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

fn upnp_answer(
    path: &str,
    action: &str,
    body: &[u8],
    requests: &Requests,
    refuse: bool,
) -> (u16, String) {
    if path != "/ctl/IPConn" {
        requests
            .lock()
            .unwrap()
            .push(("upnp".into(), "GET".into(), path.into()));
    }
    match path {
        "/rootDesc.xml" => (200, root_description()),
        "/WANIPCn.xml" => (200, service_description()),
        "/ctl/IPConn" => {
            let body = String::from_utf8_lossy(body);
            let arg = |name: &str| -> String {
                let open = format!("<{name}>");
                body.split(&open)
                    .nth(1)
                    .and_then(|rest| rest.split(&format!("</{name}>")).next())
                    .unwrap_or("")
                    .to_owned()
            };
            let detail = format!(
                "{} {} -> {}:{} lease {}",
                arg("NewProtocol"),
                arg("NewExternalPort"),
                arg("NewInternalClient"),
                arg("NewInternalPort"),
                arg("NewLeaseDuration")
            );
            requests
                .lock()
                .unwrap()
                .push(("upnp".into(), action.into(), detail));
            if refuse && action == "AddPortMapping" {
                return (500, soap_fault(718, "ConflictInMappingEntry"));
            }
            let inner = match action {
                "GetExternalIPAddress" => {
                    format!("<NewExternalIPAddress>{EXTERNAL_IP}</NewExternalIPAddress>")
                }
                _ => String::new(),
            };
            (200, soap_response(action, &inner))
        }
        _ => (404, String::new()),
    }
}

fn soap_response(action: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
         <u:{action}Response xmlns:u=\"{SERVICE}\">{inner}</u:{action}Response></s:Body></s:Envelope>"
    )
}

fn soap_fault(code: u16, description: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><s:Fault>\
         <faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>\
         <UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>{code}</errorCode>\
         <errorDescription>{description}</errorDescription></UPnPError></detail></s:Fault>\
         </s:Body></s:Envelope>"
    )
}

/// An InternetGatewayDevice:1 with a WANDevice, a WANConnectionDevice and its WANIPConnection.
fn root_description() -> String {
    format!(
        r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
<specVersion><major>1</major><minor>0</minor></specVersion>
<device>
<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<friendlyName>test router</friendlyName><UDN>uuid:prism-test-gateway</UDN>
<serviceList><service>
<serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>
<serviceId>urn:upnp-org:serviceId:L3Forwarding1</serviceId>
<controlURL>/ctl/L3F</controlURL><eventSubURL>/evt/L3F</eventSubURL><SCPDURL>/L3F.xml</SCPDURL>
</service></serviceList>
<deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<friendlyName>WANDevice</friendlyName><UDN>uuid:prism-test-gateway-wan</UDN>
<deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<friendlyName>WANConnectionDevice</friendlyName><UDN>uuid:prism-test-gateway-conn</UDN>
<serviceList><service>
<serviceType>{SERVICE}</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL><SCPDURL>/WANIPCn.xml</SCPDURL>
</service></serviceList>
</device></deviceList>
</device></deviceList>
</device>
</root>"#
    )
}

/// The WANIPConnection:1 actions the cache uses, with their arguments in the standard order.
fn service_description() -> String {
    let action = |name: &str, args: &[(&str, &str)]| {
        let args: String = args
            .iter()
            .map(|(arg, direction)| {
                format!(
                    "<argument><name>{arg}</name><direction>{direction}</direction>\
                     <relatedStateVariable>X</relatedStateVariable></argument>"
                )
            })
            .collect();
        format!("<action><name>{name}</name><argumentList>{args}</argumentList></action>")
    };
    let actions = [
        action(
            "AddPortMapping",
            &[
                ("NewRemoteHost", "in"),
                ("NewExternalPort", "in"),
                ("NewProtocol", "in"),
                ("NewInternalPort", "in"),
                ("NewInternalClient", "in"),
                ("NewEnabled", "in"),
                ("NewPortMappingDescription", "in"),
                ("NewLeaseDuration", "in"),
            ],
        ),
        action(
            "DeletePortMapping",
            &[
                ("NewRemoteHost", "in"),
                ("NewExternalPort", "in"),
                ("NewProtocol", "in"),
            ],
        ),
        action("GetExternalIPAddress", &[("NewExternalIPAddress", "out")]),
    ]
    .concat();
    format!(
        r#"<?xml version="1.0"?>
<scpd xmlns="urn:schemas-upnp-org:service-1-0">
<specVersion><major>1</major><minor>0</minor></specVersion>
<actionList>{actions}</actionList>
<serviceStateTable></serviceStateTable>
</scpd>"#
    )
}

/// NAT-PMP (RFC 6886 3.2, 3.3): external address and mapping requests; PCP requests get the
/// NAT-PMP "unsupported version" answer.
async fn answer_natpmp(socket: UdpSocket, requests: Requests, refuse: bool) {
    let mut buf = [0u8; 1100];
    let epoch = 1000u32;
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        let request = &buf[..n];
        let record = |action: &str, detail: String| {
            requests
                .lock()
                .unwrap()
                .push(("natpmp".into(), action.into(), detail));
        };
        let mut answer = Vec::with_capacity(16);
        match request {
            [2, op, ..] => {
                record("PCP", format!("opcode {op}"));
                answer.extend_from_slice(&[0, 0x80 | (op & 0x7f), 0, 1]);
                answer.extend_from_slice(&epoch.to_be_bytes());
            }
            [0, 0] => {
                record("ExternalAddress", String::new());
                answer.extend_from_slice(&[0, 128, 0, 0]);
                answer.extend_from_slice(&epoch.to_be_bytes());
                answer.extend_from_slice(&EXTERNAL_IP.octets());
            }
            [0, op @ (1 | 2), 0, 0, ip0, ip1, ep0, ep1, l0, l1, l2, l3] => {
                let internal = u16::from_be_bytes([*ip0, *ip1]);
                let external = u16::from_be_bytes([*ep0, *ep1]);
                let lifetime = u32::from_be_bytes([*l0, *l1, *l2, *l3]);
                let transport = if *op == 1 { "UDP" } else { "TCP" };
                let action = if lifetime == 0 { "Unmap" } else { "Map" };
                record(
                    action,
                    format!("{transport} {internal} -> {external} lease {lifetime}"),
                );
                let result: u16 = if refuse && lifetime > 0 { 2 } else { 0 };
                answer.extend_from_slice(&[0, 128 + op]);
                answer.extend_from_slice(&result.to_be_bytes());
                answer.extend_from_slice(&epoch.to_be_bytes());
                answer.extend_from_slice(&internal.to_be_bytes());
                // Granted as asked (a real router may pick another external port).
                let granted_port = if lifetime == 0 {
                    0
                } else {
                    external.max(internal)
                };
                answer.extend_from_slice(&granted_port.to_be_bytes());
                answer.extend_from_slice(&lifetime.to_be_bytes());
            }
            _ => continue,
        }
        let _ = socket.send_to(&answer, from).await;
    }
}
