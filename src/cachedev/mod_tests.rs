//! Unit tests of finding the cache device in a sysfs-like tree and of formatting an image
//! file (the kernel and `e2fsck` read the result in `tests/cache_disk.rs`).

use super::*;

fn scratch(name: &str) -> PathBuf {
    crate::testing::scratch(&format!("cachedev-{name}"))
}

#[test]
fn devices_are_found_by_partition_name_filesystem_label_or_path() {
    let root = scratch("find");
    let (sys, dev) = (root.join("sys"), root.join("dev"));
    std::fs::create_dir_all(&dev).unwrap();
    let add = |name: &str, uevent: &str, head: Option<Vec<u8>>| {
        std::fs::create_dir_all(sys.join(name)).unwrap();
        std::fs::write(sys.join(name).join("uevent"), uevent).unwrap();
        if let Some(head) = head {
            std::fs::write(dev.join(name), head).unwrap();
        }
    };
    let mut ext = vec![0u8; 4096];
    ext[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xEF]);
    ext[1024 + 120..1024 + 129].copy_from_slice(b"zos-cache");
    add("loop0", "DEVNAME=loop0\n", Some(ext.clone()));
    add("vda", "DEVNAME=vda\nDEVTYPE=disk\n", Some(vec![0; 4096]));
    add(
        "vda1",
        "DEVNAME=vda1\nDEVTYPE=partition\nPARTNAME=initagent\n",
        Some(vec![1; 4096]),
    );
    add("vdb", "DEVNAME=vdb\nDEVTYPE=disk\n", Some(ext));
    let look = |spec: &str| find_once(&CacheSpec::parse(spec).unwrap(), &sys, &dev);
    assert_eq!(look("PARTLABEL=initagent"), Some(dev.join("vda1")));
    // Loop devices are never candidates, whatever they hold.
    assert_eq!(look("LABEL=zos-cache"), Some(dev.join("vdb")));
    assert_eq!(look("LABEL=other"), None);
    assert_eq!(look("PARTLABEL=other"), None);
    let gone = CacheSpec::Device("/dev/no-such-disk-here".into());
    assert_eq!(find_once(&gone, &sys, &dev), None);
    let waited = find(&gone, Duration::from_millis(150)).unwrap_err();
    assert!(
        waited
            .to_string()
            .contains("no device /dev/no-such-disk-here appeared within 0 s"),
        "{waited}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn an_image_is_formatted_and_then_reads_as_ext3_with_the_label() {
    let root = scratch("format");
    let image = root.join("disk.img");
    let file = File::create(&image).unwrap();
    file.set_len(80 << 20).unwrap();
    assert_eq!(probe::probe(&read_head(&image).unwrap()), Content::Blank);
    let bytes = format(&image, LABEL).unwrap();
    assert_eq!(bytes, 80 << 20);
    assert_eq!(
        probe::probe(&read_head(&image).unwrap()),
        Content::Filesystem {
            fstype: "ext4",
            kind: "ext3",
            label: LABEL.into()
        }
    );
    // Too small: refused, nothing written.
    let tiny = root.join("tiny.img");
    File::create(&tiny).unwrap().set_len(8 << 20).unwrap();
    assert!(matches!(
        format(&tiny, LABEL),
        Err(CacheDevError::TooSmall { .. })
    ));
    assert_eq!(probe::probe(&read_head(&tiny).unwrap()), Content::Blank);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_caches_follow_the_record_while_its_directory_is_there() {
    let root = scratch("record");
    let record = root.join("cachedisk.json");
    let fallback = root.join("run-cache");
    assert_eq!(caches_dir(&record, &fallback), fallback);
    let dir = root.join("mnt").join(DIR);
    let prepared = Prepared {
        device: "/dev/vdb".into(),
        kind: "ext3".into(),
        label: LABEL.into(),
        formatted: true,
        mount_point: root.join("mnt").display().to_string(),
        dir: dir.display().to_string(),
    };
    std::fs::write(&record, serde_json::to_vec(&prepared).unwrap()).unwrap();
    assert_eq!(
        caches_dir(&record, &fallback),
        fallback,
        "not mounted: /run"
    );
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(caches_dir(&record, &fallback), dir);
    std::fs::remove_dir_all(&root).unwrap();
}
