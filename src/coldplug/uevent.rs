//! Pure parser for kernel uevent messages: `ACTION@DEVPATH\0KEY=VALUE\0…` (at most 64
//! variables in 2048 bytes from the kernel; anything is accepted here, nothing panics).
//! udevd's re-broadcasts (`libudev\0` + magic) are refused: only the kernel's format is read.

/// One kernel uevent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `bind`, `change`, …
    pub action: String,
    /// The device path under `/sys` (`/devices/pci0000:00/…`).
    pub devpath: String,
    /// The `KEY=VALUE` variables in order.
    pub vars: Vec<(String, String)>,
}

impl Uevent {
    /// The value of a variable.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The device's modalias, when the event carries one.
    pub fn modalias(&self) -> Option<&str> {
        self.var("MODALIAS").filter(|m| !m.is_empty())
    }

    /// The kernel's number for this event (`SEQNUM`).
    pub fn seqnum(&self) -> Option<u64> {
        self.var("SEQNUM")?.parse().ok()
    }
}

/// Parses one message; `None` for anything that is not a kernel uevent.
pub fn parse(message: &[u8]) -> Option<Uevent> {
    if message.starts_with(b"libudev\0") {
        return None;
    }
    let mut fields = message.split(|&b| b == 0).filter(|f| !f.is_empty());
    let header = std::str::from_utf8(fields.next()?).ok()?;
    let (action, devpath) = header.split_once('@')?;
    if action.is_empty() || !devpath.starts_with('/') {
        return None;
    }
    let mut vars = Vec::new();
    for field in fields {
        let Ok(text) = std::str::from_utf8(field) else {
            continue;
        };
        if let Some((key, value)) = text.split_once('=') {
            if !key.is_empty() {
                vars.push((key.to_string(), value.to_string()));
            }
        }
    }
    if let Some(action_var) = vars.iter().find(|(k, _)| k == "ACTION") {
        if action_var.1 != action {
            return None; // a header that disagrees with its own body
        }
    }
    Some(Uevent {
        action: action.to_string(),
        devpath: devpath.to_string(),
        vars,
    })
}

/// The `SEQNUM` of an event udevd re-sent after processing it (`libudev\0`, magic
/// 0xfeedcafe, then offsets to `KEY=VALUE\0` properties in the sender's byte order).
pub fn udev_processed_seqnum(message: &[u8]) -> Option<u64> {
    let rest = message.strip_prefix(b"libudev\0")?;
    if rest.get(..4)? != 0xfeed_cafe_u32.to_be_bytes() {
        return None;
    }
    let word = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = rest.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_ne_bytes(bytes) as usize)
    };
    let (offset, length) = (word(8)?, word(12)?);
    let properties = message.get(offset..offset.checked_add(length)?)?;
    properties
        .split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(b"SEQNUM="))
        .and_then(|value| std::str::from_utf8(value).ok()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_messages() {
        let message = b"add@/devices/pci0000:00/0000:00:03.0\0ACTION=add\0\
DEVPATH=/devices/pci0000:00/0000:00:03.0\0SUBSYSTEM=pci\0\
MODALIAS=pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00\0SEQNUM=1234\0";
        let event = parse(message).unwrap();
        assert_eq!(event.action, "add");
        assert_eq!(event.devpath, "/devices/pci0000:00/0000:00:03.0");
        assert_eq!(event.var("SUBSYSTEM"), Some("pci"));
        assert!(event.modalias().unwrap().starts_with("pci:v00008086"));
        assert_eq!(event.var("SEQNUM"), Some("1234"));
        assert_eq!(event.seqnum(), Some(1234));

        let module = parse(b"add@/module/e1000\0ACTION=add\0SUBSYSTEM=module\0").unwrap();
        assert_eq!(module.modalias(), None);
        assert_eq!(module.seqnum(), None);
        let empty_alias = parse(b"bind@/devices/x\0MODALIAS=\0").unwrap();
        assert_eq!(empty_alias.modalias(), None);
    }

    #[test]
    fn seqnum_of_a_udev_processed_event() {
        let properties = b"ACTION=add\0DEVPATH=/devices/x\0SEQNUM=4711\0";
        let mut message = b"libudev\0".to_vec();
        message.extend_from_slice(&0xfeed_cafe_u32.to_be_bytes());
        message.extend_from_slice(&40u32.to_ne_bytes()); // header size
        message.extend_from_slice(&40u32.to_ne_bytes()); // properties offset
        message.extend_from_slice(&(properties.len() as u32).to_ne_bytes());
        message.resize(40, 0);
        message.extend_from_slice(properties);
        assert_eq!(udev_processed_seqnum(&message), Some(4711));
        assert_eq!(udev_processed_seqnum(b"add@/devices/x\0SEQNUM=1\0"), None);
        message[8] ^= 1;
        assert_eq!(udev_processed_seqnum(&message), None, "bad magic");
        assert_eq!(
            udev_processed_seqnum(b"libudev\0\xfe\xed\xca\xfe\xff\xff\xff\xff"),
            None
        );
        let mut far = message.clone();
        far[8] ^= 1;
        far[16..20].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(udev_processed_seqnum(&far), None, "offset past the end");
    }

    #[test]
    fn foreign_and_broken_messages() {
        assert_eq!(parse(b"libudev\0\xfe\xed\xca\xfe..."), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"no-at-sign\0A=b"), None);
        assert_eq!(parse(b"@/devices/x\0"), None);
        assert_eq!(parse(b"add@relative\0"), None);
        assert_eq!(parse(b"add@/devices/x\0ACTION=remove\0"), None);
        let odd = parse(b"add@/devices/x\0\xff\xfe=1\0=nokey\0NOVALUE\0K=v=w\0").unwrap();
        assert_eq!(odd.vars, vec![("K".to_string(), "v=w".to_string())]);
    }
}
