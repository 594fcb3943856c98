//! What a device holds, from its first mebibyte: a filesystem the cache can live in (ext2/3/4,
//! btrfs, XFS: mounted, one directory of its own used), nothing at all (formatted), or
//! something else, which is never touched. Pure.

/// How `initagent.flist.cache=` names the device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(into = "String")]
pub enum CacheSpec {
    /// `LABEL=…`: the filesystem label (an existing filesystem).
    Label(String),
    /// `PARTLABEL=…`: the GPT partition name.
    PartLabel(String),
    /// `/dev/…`: the device itself.
    Device(String),
}

impl CacheSpec {
    /// Parses the key's value; `None` when it is none of the three forms.
    pub fn parse(value: &str) -> Option<CacheSpec> {
        let nonempty = |s: &str| (!s.is_empty() && !s.contains('\0')).then(|| s.to_string());
        if let Some(label) = value.strip_prefix("LABEL=") {
            return nonempty(label).map(CacheSpec::Label);
        }
        if let Some(label) = value.strip_prefix("PARTLABEL=") {
            return nonempty(label).map(CacheSpec::PartLabel);
        }
        let name = value.strip_prefix("/dev/")?;
        (!name.is_empty() && !name.split('/').any(|part| part == ".." || part.is_empty()))
            .then(|| CacheSpec::Device(value.to_string()))
    }
}

impl From<CacheSpec> for String {
    fn from(spec: CacheSpec) -> String {
        spec.to_string()
    }
}

impl std::fmt::Display for CacheSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheSpec::Label(label) => write!(f, "LABEL={label}"),
            CacheSpec::PartLabel(label) => write!(f, "PARTLABEL={label}"),
            CacheSpec::Device(path) => f.write_str(path),
        }
    }
}

/// What a device's first mebibyte says it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A filesystem the kernel mounts as `fstype`, with its label.
    Filesystem {
        /// The type `mount` is given (`ext4` also mounts ext2 and ext3).
        fstype: &'static str,
        /// What it is, for a person (`ext3`, `btrfs`).
        kind: &'static str,
        /// Its label (may be empty).
        label: String,
    },
    /// Zeros only: nothing to keep.
    Blank,
    /// Something else, named when known (a partition table, LUKS, LVM, swap).
    Other(&'static str),
}

/// The bytes of the first mebibyte a probe needs.
pub const PROBE_BYTES: usize = 1 << 20;

fn at(head: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    head.get(offset..offset + len)
}

fn label(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .trim_end()
        .to_string()
}

/// Identifies the device's content from its first bytes (up to [`PROBE_BYTES`]; a shorter
/// device is read whole).
pub fn probe(head: &[u8]) -> Content {
    // ext2/3/4: the superblock 1024 bytes in, magic 0xEF53 at 56.
    if at(head, 1024 + 56, 2) == Some(&[0x53, 0xEF]) {
        let compat = at(head, 1024 + 92, 4).map_or(0, |b| b[0]);
        let incompat =
            at(head, 1024 + 96, 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        // extents, 64bit, flex_bg: ext4; a journal alone: ext3.
        let kind = if incompat & (0x40 | 0x80 | 0x200) != 0 {
            "ext4"
        } else if compat & 0x4 != 0 {
            "ext3"
        } else {
            "ext2"
        };
        let name = at(head, 1024 + 120, 16).map(label).unwrap_or_default();
        return Content::Filesystem {
            fstype: "ext4",
            kind,
            label: name,
        };
    }
    if at(head, 0x10040, 8) == Some(b"_BHRfS_M") {
        let name = at(head, 0x1012b, 256).map(label).unwrap_or_default();
        return Content::Filesystem {
            fstype: "btrfs",
            kind: "btrfs",
            label: name,
        };
    }
    if at(head, 0, 4) == Some(b"XFSB") {
        let name = at(head, 108, 12).map(label).unwrap_or_default();
        return Content::Filesystem {
            fstype: "xfs",
            kind: "xfs",
            label: name,
        };
    }
    if at(head, 0, 6) == Some(b"LUKS\xba\xbe") {
        return Content::Other("a LUKS volume");
    }
    if at(head, 512, 8) == Some(b"LABELONE") {
        return Content::Other("an LVM physical volume");
    }
    if at(head, 512, 8) == Some(b"EFI PART") {
        return Content::Other("a GPT partition table (name a partition: PARTLABEL=…)");
    }
    if at(head, 4086, 10) == Some(b"SWAPSPACE2") {
        return Content::Other("swap space");
    }
    if at(head, 510, 2) == Some(&[0x55, 0xAA]) {
        return Content::Other("a boot sector or MBR partition table");
    }
    if head.iter().all(|&b| b == 0) {
        return Content::Blank;
    }
    Content::Other("data of an unknown kind")
}

/// The value of `KEY=` in a sysfs `uevent` file's text.
pub fn uevent_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_ways_to_name_a_device() {
        assert_eq!(
            CacheSpec::parse("LABEL=zos-cache"),
            Some(CacheSpec::Label("zos-cache".into()))
        );
        assert_eq!(
            CacheSpec::parse("PARTLABEL=initagent"),
            Some(CacheSpec::PartLabel("initagent".into()))
        );
        assert_eq!(
            CacheSpec::parse("/dev/vdb"),
            Some(CacheSpec::Device("/dev/vdb".into()))
        );
        assert_eq!(
            CacheSpec::parse("/dev/disk/by-id/x"),
            Some(CacheSpec::Device("/dev/disk/by-id/x".into()))
        );
        for bad in [
            "",
            "LABEL=",
            "vdb",
            "/dev/",
            "/dev/../etc/passwd",
            "UUID=1234",
            "/dev//x",
        ] {
            assert_eq!(CacheSpec::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            CacheSpec::parse("LABEL=a b").unwrap().to_string(),
            "LABEL=a b"
        );
    }

    #[test]
    fn contents_are_told_apart_and_only_zeros_are_blank() {
        let mut head = vec![0u8; PROBE_BYTES];
        assert_eq!(probe(&head), Content::Blank);
        head[300_000] = 1;
        assert_eq!(probe(&head), Content::Other("data of an unknown kind"));
        head[300_000] = 0;
        let mut ext = head.clone();
        ext[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xEF]);
        ext[1024 + 92] = 0x4;
        ext[1024 + 120..1024 + 129].copy_from_slice(b"zos-cache");
        assert_eq!(
            probe(&ext),
            Content::Filesystem {
                fstype: "ext4",
                kind: "ext3",
                label: "zos-cache".into()
            }
        );
        ext[1024 + 96] = 0x40;
        assert!(matches!(
            probe(&ext),
            Content::Filesystem { kind: "ext4", .. }
        ));
        let mut btrfs = head.clone();
        btrfs[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        btrfs[0x1012b..0x1012e].copy_from_slice(b"zos");
        assert!(
            matches!(probe(&btrfs), Content::Filesystem { fstype: "btrfs", label, .. } if label == "zos")
        );
        let mut xfs = head.clone();
        xfs[..4].copy_from_slice(b"XFSB");
        assert!(matches!(
            probe(&xfs),
            Content::Filesystem { fstype: "xfs", .. }
        ));
        let mut gpt = head.clone();
        gpt[510..512].copy_from_slice(&[0x55, 0xAA]);
        gpt[512..520].copy_from_slice(b"EFI PART");
        assert!(matches!(probe(&gpt), Content::Other(what) if what.contains("GPT")));
        let mut swap = head.clone();
        swap[4086..4096].copy_from_slice(b"SWAPSPACE2");
        assert_eq!(probe(&swap), Content::Other("swap space"));
        // Short and empty reads never panic.
        assert_eq!(probe(&[]), Content::Blank);
        assert!(matches!(
            probe(&ext[..1100]),
            Content::Filesystem { kind: "ext2", .. }
        ));
    }

    #[test]
    fn uevent_values() {
        let text =
            "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=initagent\n";
        assert_eq!(uevent_value(text, "DEVNAME"), Some("vda1"));
        assert_eq!(uevent_value(text, "PARTNAME"), Some("initagent"));
        assert_eq!(uevent_value(text, "PART"), None);
    }
}
