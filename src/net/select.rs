//! Which links to try, and which one the operator asked for. Pure.
//!
//! Without an explicit list, candidates are what zos takes: Ethernet devices that are not
//! loopback, not virtual (no link kind: veth, bridge, bond, vlan, …) and not enslaved to a
//! bridge or bond. An explicit list (`--links`, `initagent.net.links=`) is taken as it is,
//! virtual links included. The preferred link comes from `initagent.net.iface=` (a name or a
//! MAC), or `BOOTIF=` (pxelinux's `01-aa-bb-cc-dd-ee-ff`, the NIC the node booted from).

use super::netlink::Link;

/// The link the operator wants used, when it gets a lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Preferred {
    /// By interface name.
    Name(String),
    /// By hardware address.
    Mac([u8; 6]),
}

impl Preferred {
    /// Parses `initagent.net.iface=`: a MAC (`aa:bb:cc:dd:ee:ff` or with `-`) or a name.
    pub fn parse(text: &str) -> Preferred {
        match parse_mac(text) {
            Some(mac) => Preferred::Mac(mac),
            None => Preferred::Name(text.to_string()),
        }
    }

    /// Parses pxelinux's `BOOTIF=01-aa-bb-cc-dd-ee-ff` (hardware type 1, then the MAC).
    pub fn from_bootif(text: &str) -> Option<Preferred> {
        let mac = text.strip_prefix("01-")?;
        parse_mac(mac).map(Preferred::Mac)
    }

    /// Whether `link` is the one meant.
    pub fn matches(&self, link: &Link) -> bool {
        match self {
            Preferred::Name(name) => &link.name == name,
            Preferred::Mac(mac) => link.mac.as_ref() == Some(mac),
        }
    }
}

/// Six hex pairs separated by `:` or `-`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

/// The candidates, in index order, and every link left out with the reason.
pub fn candidates(
    links: &[Link],
    explicit: Option<&[String]>,
) -> (Vec<Link>, Vec<(String, String)>) {
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    if let Some(names) = explicit {
        for name in names {
            match links.iter().find(|l| &l.name == name) {
                Some(link) => chosen.push(link.clone()),
                None => skipped.push((name.clone(), "no such link".to_string())),
            }
        }
        chosen.sort_by_key(|l| l.index);
        chosen.dedup_by_key(|l| l.index);
        return (chosen, skipped);
    }
    for link in links {
        let why = if link.loopback {
            Some("loopback".to_string())
        } else if let Some(kind) = &link.kind {
            Some(format!("virtual ({kind})"))
        } else if link.master.is_some() {
            Some("enslaved to another link".to_string())
        } else if !link.ethernet || link.mac.is_none() {
            Some("not Ethernet".to_string())
        } else {
            None
        };
        match why {
            Some(why) => skipped.push((link.name.clone(), why)),
            None => chosen.push(link.clone()),
        }
    }
    chosen.sort_by_key(|l| l.index);
    (chosen, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, kind: Option<&str>) -> Link {
        Link {
            index,
            name: name.into(),
            mac: Some([2, 0, 0, 0, 0, index as u8]),
            up: false,
            carrier: false,
            kind: kind.map(str::to_string),
            master: None,
            loopback: name == "lo",
            ethernet: name != "lo",
            mtu: Some(1500),
        }
    }

    #[test]
    fn physical_links_only_unless_named() {
        let mut enslaved = link(5, "eth2", None);
        enslaved.master = Some(4);
        let links = vec![
            link(1, "lo", None),
            link(3, "eth1", None),
            link(2, "eth0", None),
            link(4, "zos", Some("bridge")),
            enslaved,
            link(6, "v0", Some("veth")),
        ];
        let (chosen, skipped) = candidates(&links, None);
        let names: Vec<&str> = chosen.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(skipped.len(), 4);
        assert!(skipped.contains(&("v0".into(), "virtual (veth)".into())));
        assert!(skipped.contains(&("eth2".into(), "enslaved to another link".into())));

        let named = ["v0".to_string(), "nope".to_string(), "v0".to_string()];
        let (chosen, skipped) = candidates(&links, Some(&named));
        assert_eq!(chosen.len(), 1);
        assert_eq!(skipped, [("nope".to_string(), "no such link".to_string())]);
    }

    #[test]
    fn preferred_link_by_name_mac_or_bootif() {
        let eth0 = link(2, "eth0", None);
        assert!(Preferred::parse("eth0").matches(&eth0));
        assert!(Preferred::parse("02:00:00:00:00:02").matches(&eth0));
        assert!(Preferred::parse("02-00-00-00-00-02").matches(&eth0));
        assert!(!Preferred::parse("02:00:00:00:00:03").matches(&eth0));
        assert!(Preferred::from_bootif("01-02-00-00-00-00-02")
            .unwrap()
            .matches(&eth0));
        assert_eq!(Preferred::from_bootif("02-00-00-00-00-00-02"), None);
        assert_eq!(Preferred::from_bootif("01-zz-00-00-00-00-02"), None);
        assert_eq!(parse_mac("0:0:0:0:0:0"), None);
    }
}
