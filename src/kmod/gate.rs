//! Which drivers of a module list this node has no device for. An image made for a fleet
//! carries the NIC drivers of every machine in it (`e1000e`, `ixgbe`, `mlx5_core`, …);
//! a node needs those of its own NICs, as udev would load them. Pure: the tree's alias
//! index and the modaliases present come from the caller.

use super::name;
use super::tree::{IndexFile, ModuleTree};

/// Buses whose devices are all there when the bootstrap set loads: PCI is enumerated
/// before `/init` runs; a virtio device appears while its transport's driver
/// (`virtio_pci`, in the same set) initialises, and an auxiliary device while its parent
/// PCI driver does (`mlx5_core` makes the `mlx5_core.eth` its own alias matches). A
/// driver with an alias on any other bus (USB, SCSI, platform, ACPI: found later or
/// asynchronously) is not gated.
pub const COMPLETE_BUSES: [&str; 3] = ["pci", "virtio", "auxiliary"];

/// The drivers of a list that load only for a device present: (module, its aliases).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Gate {
    drivers: Vec<(String, Vec<String>)>,
}

/// The bus an alias pattern is for: the text before its first `:` (`pci` of
/// `pci:v00008086d*`), `None` for an alias that names no device (`fs-ext4`).
pub fn bus(pattern: &str) -> Option<&str> {
    pattern.split_once(':').map(|(bus, _)| bus)
}

/// The virtio device a PCI device becomes once `virtio_pci` binds it, as the kernel
/// names it (`virtio:d<device>v<vendor>`): Red Hat's vendor 1AF4, devices 1000-107F; a
/// transitional device (below 1040) carries its virtio id as the PCI subsystem device, a
/// modern one as the PCI device less 1040; the vendor is the PCI subsystem vendor. So a
/// virtio NIC's driver can load with its transport's, not after it.
pub fn virtio_of_pci(modalias: &str) -> Option<String> {
    let rest = modalias.strip_prefix("pci:")?;
    let field = |tag: &str, at: usize| -> Option<u32> {
        let hex = rest.get(at..)?.strip_prefix(tag)?.get(..8)?;
        u32::from_str_radix(hex, 16).ok()
    };
    // pci:vVVVVVVVVdDDDDDDDDsvSSSSSSSSsdSSSSSSSS…: fields of 8 hex digits.
    let (vendor, device) = (field("v", 0)?, field("d", 9)?);
    let (subvendor, subdevice) = (field("sv", 18)?, field("sd", 28)?);
    if vendor != 0x1af4 || !(0x1000..=0x107f).contains(&device) {
        return None;
    }
    let id = if device < 0x1040 {
        subdevice
    } else {
        device - 0x1040
    };
    Some(format!("virtio:d{id:08X}v{subvendor:08X}"))
}

impl Gate {
    /// The modules among `names` that have aliases, all of them on [`COMPLETE_BUSES`]:
    /// the drivers of devices this node either has now or does not have. A name the tree
    /// has no module of, and a module with another alias (`fuse`'s `devname:fuse`) or
    /// none, is not gated.
    pub fn new(tree: &ModuleTree, names: &[String]) -> Gate {
        let wanted: Vec<String> = names.iter().map(|n| name::modname(n)).collect();
        // Per wanted module: its aliases, and whether one of them is not on a complete bus.
        let mut found: Vec<(String, Vec<String>, bool)> = Vec::new();
        tree.for_each_entry(IndexFile::Alias, |key, modules| {
            let pattern = String::from_utf8_lossy(key);
            let complete = bus(&pattern).is_some_and(|b| COMPLETE_BUSES.contains(&b));
            for module in modules.iter().filter(|m| wanted.contains(m)) {
                match found.iter_mut().find(|(m, _, _)| m == module) {
                    Some((_, aliases, other)) => {
                        aliases.push(pattern.to_string());
                        *other |= !complete;
                    }
                    None => found.push((module.clone(), vec![pattern.to_string()], !complete)),
                }
            }
        });
        Gate {
            drivers: found
                .into_iter()
                .filter(|(_, _, other)| !other)
                .map(|(module, aliases, _)| (module, aliases))
                .collect(),
        }
    }

    /// A gate over drivers and their aliases as given.
    #[cfg(test)]
    pub(crate) fn from_drivers(drivers: Vec<(String, Vec<String>)>) -> Gate {
        Gate { drivers }
    }

    /// Whether no module is gated.
    pub fn is_empty(&self) -> bool {
        self.drivers.is_empty()
    }

    /// Whether `name` loads only for a device present.
    pub fn gates(&self, name: &str) -> bool {
        let module = name::modname(name);
        self.drivers.iter().any(|(m, _)| *m == module)
    }

    /// The gated modules that a device among `present` (modaliases) matches.
    pub fn matching(&self, present: &[String]) -> Vec<String> {
        self.drivers
            .iter()
            .filter(|(_, aliases)| {
                aliases.iter().any(|pattern| {
                    present
                        .iter()
                        .any(|alias| super::fnmatch::fnmatch(pattern.as_bytes(), alias.as_bytes()))
                })
            })
            .map(|(module, _)| module.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::from_drivers(vec![
            (
                "e1000".into(),
                vec!["pci:v00008086d0000100Esv*sd*bc*sc*i*".into()],
            ),
            ("virtio_net".into(), vec!["virtio:d00000001v*".into()]),
        ])
    }

    #[test]
    fn a_driver_loads_only_for_a_device_present() {
        let gate = gate();
        assert!(gate.gates("e1000") && gate.gates("virtio-net") && !gate.gates("fuse"));
        let nic = "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00".to_string();
        assert_eq!(gate.matching(std::slice::from_ref(&nic)), vec!["e1000"]);
        let virtio = "virtio:d00000001v00001AF4".to_string();
        assert_eq!(
            gate.matching(std::slice::from_ref(&virtio)),
            vec!["virtio_net"]
        );
        assert!(gate
            .matching(&["pci:v00001AF4d00001000sv*".into()])
            .is_empty());
        assert!(gate.matching(&[]).is_empty());
        assert_eq!(gate.matching(&[virtio, nic]).len(), 2);
    }

    #[test]
    fn a_virtio_pci_device_is_named_as_its_virtio_device_will_be() {
        // QEMU's virtio-net-pci: transitional (the id in the subsystem device) and modern.
        let transitional = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
        let modern = "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00";
        let net = Some("virtio:d00000001v00001AF4".to_string());
        assert_eq!(virtio_of_pci(transitional), net);
        assert_eq!(virtio_of_pci(modern), net);
        assert_eq!(
            virtio_of_pci("pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00").as_deref(),
            Some("virtio:d00000002v00001AF4"),
            "a modern virtio disk"
        );
        for other in [
            "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", // e1000
            "pci:v00001AF4d00001100sv00001AF4sd00001100bc00sc00i00", // not virtio's range
            "pci:v00001AF4d0000104",                                 // cut short
            "pci:v00001AF4dZZZZ1041sv00001AF4sd00001100bc02sc00i00",
            "virtio:d00000001v00001AF4",
            "",
        ] {
            assert_eq!(virtio_of_pci(other), None, "{other}");
        }
    }

    #[test]
    fn the_bus_is_the_text_before_the_first_colon() {
        assert_eq!(bus("pci:v00008086d*"), Some("pci"));
        assert_eq!(bus("acpi*:PNP0A03:*"), Some("acpi*"));
        assert_eq!(bus("devname:fuse"), Some("devname"));
        assert_eq!(bus("fs-ext4"), None);
    }
}
