//! Pure reader of `/proc/self/mountinfo`: which paths are mount points, with what.

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The filesystem's device, `major:minor` (for FUSE the minor names its connection
    /// under `/sys/fs/fuse/connections`).
    pub device: String,
    /// Where it is mounted (octal escapes such as `\040` decoded).
    pub mount_point: String,
    /// Filesystem type (`proc`, `fuse.initagent`, …).
    pub fstype: String,
    /// Mount source (device, or a name for virtual filesystems).
    pub source: String,
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mount-point options [optional…] - fstype source super-options
    let (left, right) = line.split_once(" - ")?;
    let mut fields = left.split(' ');
    let device = fields.nth(2)?;
    let mount_point = fields.nth(1)?;
    let mut right = right.split(' ');
    let fstype = right.next()?;
    let source = right.next().unwrap_or("");
    Some(MountEntry {
        device: device.to_string(),
        mount_point: unescape(mount_point),
        fstype: unescape(fstype),
        source: unescape(source),
    })
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            if let Some(digits) = bytes.get(i + 1..i + 4) {
                if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                    let value = digits
                        .iter()
                        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                    if let Ok(byte) = u8::try_from(value) {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl MountEntry {
    /// A FUSE mount's connection number (its device's minor), which names its directory
    /// under `/sys/fs/fuse/connections`.
    pub fn fuse_connection(&self) -> Option<u32> {
        if !self.fstype.starts_with("fuse") {
            return None;
        }
        let (major, minor) = self.device.split_once(':')?;
        (major == "0").then_some(())?;
        minor.parse().ok()
    }
}

/// The last (topmost) mount on `path`, if `path` is a mount point.
pub fn mounted_at<'a>(entries: &'a [MountEntry], path: &str) -> Option<&'a MountEntry> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    entries.iter().rev().find(|e| e.mount_point == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
23 1 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw,size=4k,mode=755
40 23 0:33 / /mnt/with\\040space rw - fuse.initagent modules rw,user_id=0
garbage line
";

    #[test]
    fn parses_and_unescapes() {
        let entries = parse(SAMPLE);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].mount_point, "/mnt/with space");
        assert_eq!(entries[2].fstype, "fuse.initagent");
        assert_eq!(entries[2].device, "0:33");
        assert_eq!(entries[2].fuse_connection(), Some(33));
        assert_eq!(entries[0].fuse_connection(), None);
        assert_eq!(mounted_at(&entries, "/dev/").unwrap().fstype, "devtmpfs");
        assert!(mounted_at(&entries, "/sys").is_none());
    }

    #[test]
    fn hostile_lines() {
        for line in [
            "",
            " - ",
            "1 2 3 4",
            "1 2 3 4 5 - ",
            "\\777 - x",
            "a b c d \\40 - t s",
        ] {
            let _ = parse(line);
        }
        assert_eq!(unescape("\\9999\\"), "\\9999\\");
    }
}
