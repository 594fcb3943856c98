//! Pure reader of a kernel module's `.modinfo` section (ELF64, either byte order): the
//! NUL-separated `key=value` strings that hold `vermagic`, `depends`, `alias`, `softdep`,
//! `firmware`, `parm`… Every offset is checked against the buffer.

/// What is wrong with a module file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// No ELF magic.
    NotElf,
    /// 32-bit or unknown class.
    Not64Bit,
    /// A header or table points outside the file.
    Truncated(&'static str),
    /// There is no `.modinfo` section (not a kernel module).
    NoModinfo,
}

impl std::fmt::Display for ElfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ElfError::NotElf => write!(f, "not an ELF file"),
            ElfError::Not64Bit => write!(f, "not a 64-bit ELF file"),
            ElfError::Truncated(what) => {
                write!(f, "truncated or corrupt ELF ({what} out of range)")
            }
            ElfError::NoModinfo => write!(f, "no .modinfo section (not a kernel module)"),
        }
    }
}

impl std::error::Error for ElfError {}

struct Reader<'a> {
    data: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize, what: &'static str) -> Result<[u8; N], ElfError> {
        let end = at.checked_add(N).ok_or(ElfError::Truncated(what))?;
        let slice = self.data.get(at..end).ok_or(ElfError::Truncated(what))?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u16(&self, at: usize, what: &'static str) -> Result<u16, ElfError> {
        let b = self.bytes::<2>(at, what)?;
        Ok(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: usize, what: &'static str) -> Result<u32, ElfError> {
        let b = self.bytes::<4>(at, what)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(&self, at: usize, what: &'static str) -> Result<usize, ElfError> {
        let b = self.bytes::<8>(at, what)?;
        let v = if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        };
        usize::try_from(v).map_err(|_| ElfError::Truncated(what))
    }
}

/// The `.modinfo` section's bytes.
pub fn modinfo_section(data: &[u8]) -> Result<Vec<u8>, ElfError> {
    modinfo_section_by(|at, len| data.get(at..at.checked_add(len)?).map(<[u8]>::to_vec))
}

/// The `.modinfo` section of a module read piece by piece with `read_at(offset, len)`
/// (`None` when the range is not in the file): the header, the section table, the
/// section names, then the section — a few small reads instead of the whole file.
pub fn modinfo_section_by(
    mut read_at: impl FnMut(usize, usize) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, ElfError> {
    let Some(head) = read_at(0, 64) else {
        return Err(match read_at(0, 4) {
            Some(magic) if magic == b"\x7fELF" => ElfError::Truncated("ELF header"),
            _ => ElfError::NotElf,
        });
    };
    if !head.starts_with(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    if head.get(4) != Some(&2) {
        return Err(ElfError::Not64Bit);
    }
    let big_endian = head.get(5) == Some(&2);
    let elf = Reader {
        data: &head,
        big_endian,
    };
    let shoff = elf.u64(0x28, "section header offset")?;
    let shentsize = usize::from(elf.u16(0x3A, "section header size")?);
    let shnum = usize::from(elf.u16(0x3C, "section count")?);
    let shstrndx = usize::from(elf.u16(0x3E, "section name table index")?);
    if shentsize < 64 {
        return Err(ElfError::Truncated("section header size"));
    }
    let table_size = shnum
        .checked_mul(shentsize)
        .ok_or(ElfError::Truncated("section header"))?;
    let table_data = read_at(shoff, table_size).ok_or(ElfError::Truncated("section header"))?;
    let table = Reader {
        data: &table_data,
        big_endian,
    };
    // Field `offset` of section `i`'s header (the table holds `shnum` whole headers).
    let field = |i: usize, offset: usize| i * shentsize + offset;
    if shstrndx >= shnum {
        return Err(ElfError::Truncated("section name table"));
    }
    let names_at = table.u64(field(shstrndx, 24), "section name table")?;
    let names_size = table.u64(field(shstrndx, 32), "section name table")?;
    let names = read_at(names_at, names_size).ok_or(ElfError::Truncated("section name table"))?;
    for i in 0..shnum {
        let name_offset = table.u32(field(i, 0), "section name")? as usize;
        let name = names
            .get(name_offset..)
            .ok_or(ElfError::Truncated("section name"))?;
        if name.starts_with(b".modinfo\0") {
            let offset = table.u64(field(i, 24), "section offset")?;
            let size = table.u64(field(i, 32), "section size")?;
            return read_at(offset, size).ok_or(ElfError::Truncated(".modinfo"));
        }
    }
    Err(ElfError::NoModinfo)
}

/// A module's `.modinfo` fields, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modinfo {
    /// `(key, value)` pairs; keys repeat (`alias`, `parm`, `firmware`).
    pub fields: Vec<(String, String)>,
}

impl Modinfo {
    /// Parses the NUL-separated `key=value` strings of a `.modinfo` section.
    pub fn parse(section: &[u8]) -> Modinfo {
        let fields = section
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                let text = String::from_utf8_lossy(s);
                let (key, value) = text.split_once('=')?;
                Some((key.to_string(), value.to_string()))
            })
            .collect();
        Modinfo { fields }
    }

    /// Reads the `.modinfo` of a module image (plain ELF bytes).
    pub fn from_elf(data: &[u8]) -> Result<Modinfo, ElfError> {
        modinfo_section(data).map(|section| Modinfo::parse(&section))
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Direct dependencies (`depends=a,b`), as module names.
    pub fn depends(&self) -> Vec<String> {
        self.get("depends")
            .map(|d| {
                d.split(',')
                    .filter(|s| !s.is_empty())
                    .map(super::name::modname)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The kernel release the module was built for (first word of `vermagic`).
    pub fn vermagic_release(&self) -> Option<&str> {
        self.get("vermagic")?.split_whitespace().next()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 LE image with a `.modinfo` section holding `fields`.
    pub fn fake_module(fields: &[&str]) -> Vec<u8> {
        let mut modinfo = Vec::new();
        for f in fields {
            modinfo.extend_from_slice(f.as_bytes());
            modinfo.push(0);
        }
        let names = b"\0.shstrtab\0.modinfo\0";
        let mut data = vec![0u8; 64];
        data[0..4].copy_from_slice(b"\x7fELF");
        data[4] = 2;
        data[5] = 1;
        let modinfo_at = data.len();
        data.extend_from_slice(&modinfo);
        let names_at = data.len();
        data.extend_from_slice(names);
        let shoff = data.len();
        let mut section = |name: u32, offset: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[24..32].copy_from_slice(&(offset as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            data.extend_from_slice(&h);
        };
        section(0, 0, 0);
        section(1, names_at, names.len());
        section(11, modinfo_at, modinfo.len());
        data[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        data[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        data[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
        data[0x3E..0x40].copy_from_slice(&1u16.to_le_bytes());
        data
    }

    #[test]
    fn reads_fields() {
        let image = fake_module(&[
            "license=GPL",
            "depends=virtio,virtio-ring",
            "alias=pci:v*",
            "alias=x",
            "vermagic=6.1.0-56-amd64 SMP mod_unload",
        ]);
        let info = Modinfo::from_elf(&image).unwrap();
        assert_eq!(info.depends(), ["virtio", "virtio_ring"]);
        assert_eq!(info.all("alias").count(), 2);
        assert_eq!(info.vermagic_release(), Some("6.1.0-56-amd64"));
    }

    #[test]
    fn piecewise_reads_only_what_it_needs() {
        let mut image = fake_module(&["firmware=a.bin", "firmware=b.bin"]);
        image.extend(std::iter::repeat(0xAA).take(1 << 20));
        let mut read = 0;
        let section = modinfo_section_by(|at, len| {
            read += len;
            image.get(at..at + len).map(<[u8]>::to_vec)
        })
        .unwrap();
        let info = Modinfo::parse(&section);
        assert_eq!(info.all("firmware").collect::<Vec<_>>(), ["a.bin", "b.bin"]);
        assert!(read < 512, "read {read} bytes");
    }

    #[test]
    fn hostile_images() {
        assert_eq!(Modinfo::from_elf(b"nope").unwrap_err(), ElfError::NotElf);
        let image = fake_module(&["a=b"]);
        for len in 0..image.len() {
            let _ = Modinfo::from_elf(&image[..len]);
        }
        let mut broken = image.clone();
        broken[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Modinfo::from_elf(&broken),
            Err(ElfError::Truncated(_))
        ));
    }
}
