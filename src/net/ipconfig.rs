//! Pure parser for the kernel's `ip=` parameter (Documentation/admin-guide/nfs/nfsroot.rst):
//!
//! `ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>:<ntp0>`
//!
//! or one word: `off`/`none` (no configuration), `on`/`any`/`dhcp`/`bootp`/`both` (DHCP on
//! every candidate link). Every field may be empty. A client address with an empty or
//! `off`/`none` autoconf field is a static configuration; an empty client address, or an
//! autoconf field asking for DHCP, is DHCP (on `<device>` when named). An empty netmask
//! takes the address's class default, as the kernel does. RARP is not supported.

use std::net::Ipv4Addr;

/// What `ip=` asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum IpParam {
    /// `ip=off`/`none`: configure nothing.
    Off,
    /// DHCP, on one named link or on every candidate.
    Dhcp {
        /// `<device>`, when given.
        device: Option<String>,
        /// `<hostname>`, sent to the server when given.
        hostname: Option<String>,
    },
    /// A static address.
    Static(StaticConfig),
}

/// The fields of a static `ip=`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaticConfig {
    /// `<client-ip>`.
    pub address: Ipv4Addr,
    /// From `<netmask>` (or the class default).
    pub prefix_len: u8,
    /// `<gw-ip>`, when given.
    pub gateway: Option<Ipv4Addr>,
    /// `<hostname>`, when given.
    pub hostname: Option<String>,
    /// `<device>`, when given (otherwise the first candidate with carrier).
    pub device: Option<String>,
    /// `<dns0>`, `<dns1>` when given.
    pub dns: Vec<Ipv4Addr>,
}

/// Why an `ip=` value cannot be used; names the value and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpParamError {
    /// The whole `ip=` value.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for IpParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ip={}: {} (expected ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1> or ip=dhcp)",
            self.value, self.problem
        )
    }
}

impl std::error::Error for IpParamError {}

const FIELD_NAMES: [&str; 10] = [
    "client-ip",
    "server-ip",
    "gw-ip",
    "netmask",
    "hostname",
    "device",
    "autoconf",
    "dns0-ip",
    "dns1-ip",
    "ntp0-ip",
];

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Parses an `ip=` value.
pub fn parse(value: &str) -> Result<IpParam, IpParamError> {
    let fail = |problem: String| IpParamError {
        value: value.to_string(),
        problem,
    };
    if !value.contains(':') {
        return match autoconf(value) {
            Some(Autoconf::Off) => Ok(IpParam::Off),
            Some(Autoconf::Dhcp) => Ok(IpParam::Dhcp {
                device: None,
                hostname: None,
            }),
            Some(Autoconf::Default) => Err(fail("empty value".into())),
            None => Err(fail(format!(
                "{value:?} is not off, none, on, any, dhcp, bootp or both"
            ))),
        };
    }
    let fields: Vec<&str> = value.split(':').collect();
    if fields.len() > FIELD_NAMES.len() {
        return Err(fail(format!(
            "{} fields; at most {} are defined",
            fields.len(),
            FIELD_NAMES.len()
        )));
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or("");
    let address = |i: usize| -> Result<Option<Ipv4Addr>, IpParamError> {
        let text = field(i);
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            fail(format!(
                "{} {text:?} is not an IPv4 address",
                FIELD_NAMES[i]
            ))
        })
    };
    let client = address(0)?;
    address(1)?; // the NFS server: checked, not used
    let gateway = address(2)?;
    let netmask = address(3)?;
    let hostname = non_empty(field(4));
    if let Some(name) = &hostname {
        if name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        {
            return Err(fail(format!("hostname {name:?} is not a host name")));
        }
    }
    let device = non_empty(field(5));
    if let Some(name) = &device {
        if name.len() > MAX_IFNAME || name.contains('/') || name.bytes().any(|b| b <= b' ') {
            return Err(fail(format!("device {name:?} is not an interface name")));
        }
    }
    let mode = autoconf(field(6)).ok_or_else(|| {
        fail(format!(
            "autoconf {:?} is not off, none, on, any, dhcp, bootp or both",
            field(6)
        ))
    })?;
    let dns: Vec<Ipv4Addr> = [address(7)?, address(8)?].into_iter().flatten().collect();
    address(9)?; // NTP: checked, not used
    match (client, mode) {
        (_, Autoconf::Dhcp) | (None, Autoconf::Default) => Ok(IpParam::Dhcp { device, hostname }),
        (None, Autoconf::Off) => Ok(IpParam::Off),
        (Some(address), Autoconf::Off | Autoconf::Default) => {
            let prefix_len = match netmask {
                Some(mask) => prefix_of(mask)
                    .ok_or_else(|| fail(format!("netmask {mask} is not a contiguous mask")))?,
                None => class_prefix(address),
            };
            Ok(IpParam::Static(StaticConfig {
                address,
                prefix_len,
                gateway,
                hostname,
                device,
                dns,
            }))
        }
    }
}

enum Autoconf {
    Default,
    Off,
    Dhcp,
}

fn autoconf(text: &str) -> Option<Autoconf> {
    match text {
        "" => Some(Autoconf::Default),
        "off" | "none" => Some(Autoconf::Off),
        "on" | "any" | "dhcp" | "bootp" | "both" => Some(Autoconf::Dhcp),
        _ => None,
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// The prefix length of a contiguous netmask.
pub fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The netmask of a prefix length (clamped to 32).
pub fn mask_of(prefix_len: u8) -> Ipv4Addr {
    let len = u32::from(prefix_len.min(32));
    Ipv4Addr::from(u32::MAX.checked_shl(32 - len).unwrap_or(0))
}

/// The classful default prefix the kernel uses for an address without a netmask.
pub fn class_prefix(address: Ipv4Addr) -> u8 {
    match address.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn one_word_forms() {
        assert_eq!(parse("off").unwrap(), IpParam::Off);
        assert_eq!(parse("none").unwrap(), IpParam::Off);
        for word in ["on", "any", "dhcp", "bootp", "both"] {
            assert_eq!(
                parse(word).unwrap(),
                IpParam::Dhcp {
                    device: None,
                    hostname: None
                }
            );
        }
        assert!(parse("rarp").unwrap_err().to_string().contains("ip=rarp"));
        assert!(parse("").is_err());
    }

    #[test]
    fn full_static_form() {
        let parsed = parse(
            "10.0.0.2:10.0.0.9:10.0.0.1:255.255.255.0:node1:eth0:off:1.1.1.1:8.8.8.8:9.9.9.9",
        )
        .unwrap();
        assert_eq!(
            parsed,
            IpParam::Static(StaticConfig {
                address: ip("10.0.0.2"),
                prefix_len: 24,
                gateway: Some(ip("10.0.0.1")),
                hostname: Some("node1".into()),
                device: Some("eth0".into()),
                dns: vec![ip("1.1.1.1"), ip("8.8.8.8")],
            })
        );
    }

    #[test]
    fn short_forms_and_defaults() {
        // Client address only: static, class default mask.
        match parse("172.16.5.4::::::").unwrap() {
            IpParam::Static(s) => {
                assert_eq!((s.prefix_len, s.gateway, s.device), (16, None, None));
            }
            other => panic!("{other:?}"),
        }
        match parse("192.168.1.7:::").unwrap() {
            IpParam::Static(s) => assert_eq!(s.prefix_len, 24),
            other => panic!("{other:?}"),
        }
        // No client address: DHCP on the named device.
        assert_eq!(
            parse(":::::eth1:dhcp").unwrap(),
            IpParam::Dhcp {
                device: Some("eth1".into()),
                hostname: None
            }
        );
        assert_eq!(
            parse("::::box::").unwrap(),
            IpParam::Dhcp {
                device: None,
                hostname: Some("box".into())
            }
        );
        // A client address with autoconf=dhcp asks for DHCP; no address with off: nothing.
        assert!(matches!(
            parse("10.1.1.1::::::dhcp").unwrap(),
            IpParam::Dhcp { .. }
        ));
        assert_eq!(parse("::::::off").unwrap(), IpParam::Off);
    }

    #[test]
    fn errors_name_the_field_and_the_value() {
        let e = parse("10.0.0.300::::::").unwrap_err().to_string();
        assert!(e.contains("client-ip") && e.contains("10.0.0.300"), "{e}");
        let e = parse("10.0.0.2:::255.0.255.0::::").unwrap_err().to_string();
        assert!(e.contains("netmask") && e.contains("contiguous"), "{e}");
        let e = parse("10.0.0.2::::::sometimes").unwrap_err().to_string();
        assert!(e.contains("autoconf") && e.contains("sometimes"), "{e}");
        let e = parse("10.0.0.2:::::a-very-long-interface-name:")
            .unwrap_err()
            .to_string();
        assert!(e.contains("device"), "{e}");
        assert!(parse("1:2:3:4:5:6:7:8:9:10:11")
            .unwrap_err()
            .to_string()
            .contains("11 fields"));
        assert!(parse("10.0.0.2::::bad host::").is_err());
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_of(ip("255.255.255.0")), Some(24));
        assert_eq!(prefix_of(ip("0.0.0.0")), Some(0));
        assert_eq!(prefix_of(ip("255.255.255.255")), Some(32));
        assert_eq!(prefix_of(ip("255.255.0.255")), None);
        assert_eq!(mask_of(20), ip("255.255.240.0"));
        assert_eq!(mask_of(0), ip("0.0.0.0"));
        assert_eq!(mask_of(40), ip("255.255.255.255"));
        for len in 0..=32 {
            assert_eq!(prefix_of(mask_of(len)), Some(len));
        }
    }
}
