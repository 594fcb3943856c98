//! The cache device's filesystem against the real tools: images of several sizes formatted
//! by the agent pass `e2fsck -fn` (e2fsprogs is the oracle, as kmod is for the module
//! resolver), the kernel mounts them, takes files, and after an unmount `e2fsck` still
//! finds nothing to mend. Needs root (loop devices).

use initagent::cachedev::{self, probe, LABEL};
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "initagent-cache-disk-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn e2fsck(image: &Path) -> String {
    let out = Command::new("e2fsck")
        .args(["-fn"])
        .arg(image)
        .output()
        .expect("e2fsck (e2fsprogs)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "e2fsck -fn {}: {text}",
        image.display()
    );
    text
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn formatted_images_pass_e2fsck_and_the_kernel_mounts_and_fills_them() {
    let dir = scratch("sizes");
    // One group; two; five with superblock copies in 0, 1 and 3; a partial last group;
    // and past the 16 GiB bound (sparse, so nothing is really written past 16 GiB).
    for mib in [64u64, 200, 600, 1000 + 3, 20 << 10] {
        let image = dir.join(format!("{mib}.img"));
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        cachedev::format(&image, LABEL).unwrap();
        let text = e2fsck(&image);
        assert!(text.contains("initagent-cache: 11/"), "{text}");
        let dumped = Command::new("dumpe2fs")
            .arg("-h")
            .arg(&image)
            .output()
            .unwrap();
        let header = String::from_utf8_lossy(&dumped.stdout);
        assert!(
            header.contains("has_journal")
                && header.contains("filetype")
                && header.contains("sparse_super"),
            "{header}"
        );
        assert!(
            header.contains("Filesystem volume name:   initagent-cache"),
            "{header}"
        );
        if mib == 20 << 10 {
            assert!(
                header.contains("Block count:              4194304"),
                "{header}"
            );
        }
        std::fs::remove_file(&image).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_kernel_mounts_it_as_ext4_and_e2fsck_is_content_after_writes() {
    let dir = scratch("mount");
    let image = dir.join("cache.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    cachedev::format(&image, LABEL).unwrap();
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(Command::new("mount")
        .args(["-t", "ext4", "-o", "loop"])
        .arg(&image)
        .arg(&mnt));
    let mounted = (|| {
        for i in 0..300u32 {
            let sub = mnt.join(format!("{:02x}/{:02x}", i % 256, i / 256));
            std::fs::create_dir_all(&sub)?;
            std::fs::write(
                sub.join(format!("block{i}")),
                vec![i as u8; 40_000 + i as usize],
            )?;
        }
        std::io::Result::Ok(())
    })();
    let _ = Command::new("sync").status();
    run(Command::new("umount").arg(&mnt));
    mounted.unwrap();
    let text = e2fsck(&image);
    // 300 files, 300 + 256 directories (two levels), the 11 reserved inodes.
    assert!(text.contains("initagent-cache: 867/"), "{text}");
    // The device is a filesystem now: the probe says so, and it would be shared, never formatted again.
    let head = std::fs::read(&image).unwrap();
    assert!(matches!(
        probe::probe(&head[..probe::PROBE_BYTES]),
        probe::Content::Filesystem { kind: "ext3", .. }
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A loop device over `image`, detached when dropped.
struct Loop(String);

impl Loop {
    fn new(image: &Path) -> Loop {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn image(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    path
}

#[test]
fn an_existing_filesystem_is_shared_and_anything_else_is_left_alone() {
    let dir = scratch("devices");
    let wait = std::time::Duration::from_secs(1);

    // An operator's ext4 with data on it: mounted, one directory added, nothing else
    // touched.
    let shared = image(&dir, "shared.img", 128);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-L", "zos-cache"])
        .arg(&shared));
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&shared)
        .arg(&mnt));
    std::fs::write(mnt.join("keep.txt"), b"the operator's").unwrap();
    run(Command::new("umount").arg(&mnt));
    {
        let device = Loop::new(&shared);
        let spec = probe::CacheSpec::Device(device.0.clone());
        let prepared = cachedev::prepare(&spec, wait, &mnt).unwrap();
        assert_eq!(
            (
                prepared.kind.as_str(),
                prepared.label.as_str(),
                prepared.formatted
            ),
            ("ext4", "zos-cache", false)
        );
        assert_eq!(
            std::fs::read(mnt.join("keep.txt")).unwrap(),
            b"the operator's"
        );
        assert!(mnt.join(cachedev::DIR).is_dir());
        // Prepared again (a step run twice): the mount is reused, not stacked.
        cachedev::prepare(&spec, wait, &mnt).unwrap();
        run(Command::new("umount").arg(&mnt));
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&mnt.display().to_string()),
            "mounted twice"
        );
    }

    // A blank device is formatted and mounted.
    let blank = image(&dir, "blank.img", 96);
    {
        let device = Loop::new(&blank);
        let spec = probe::CacheSpec::Device(device.0.clone());
        let prepared = cachedev::prepare(&spec, wait, &mnt).unwrap();
        assert_eq!((prepared.kind.as_str(), prepared.formatted), ("ext3", true));
        run(Command::new("umount").arg(&mnt));
    }
    e2fsck(&blank);

    // Unknown data, a partition table, too small: refused, not one byte changed.
    let other = image(&dir, "other.img", 96);
    std::fs::write(
        &other,
        [b"not a filesystem".repeat(64), vec![0; (96 << 20) - 1024]].concat(),
    )
    .unwrap();
    let gpt = image(&dir, "gpt.img", 96);
    // A protective MBR and a GPT header, as partitioning tools leave them.
    let mut table = vec![0u8; 1024];
    table[510..512].copy_from_slice(&[0x55, 0xAA]);
    table[512..520].copy_from_slice(b"EFI PART");
    std::fs::write(&gpt, [table, vec![0; (96 << 20) - 1024]].concat()).unwrap();
    let tiny = image(&dir, "tiny.img", 16);
    for (path, says) in [
        (
            &other,
            "holds data of an unknown kind; it is left untouched",
        ),
        (
            &gpt,
            "holds a GPT partition table (name a partition: PARTLABEL=…)",
        ),
        (
            &tiny,
            "16 MiB is too small for a block cache (at least 64 MiB)",
        ),
    ] {
        let before = std::fs::read(path).unwrap();
        let device = Loop::new(path);
        let spec = probe::CacheSpec::Device(device.0.clone());
        let error = cachedev::prepare(&spec, wait, &mnt)
            .unwrap_err()
            .to_string();
        assert!(error.contains(says), "{}: {error}", path.display());
        drop(device);
        assert!(
            std::fs::read(path).unwrap() == before,
            "{} was changed",
            path.display()
        );
    }
    // A device that never appears: bounded.
    let missing = probe::CacheSpec::Device("/dev/initagent-no-such-disk".into());
    let started = std::time::Instant::now();
    let error = cachedev::prepare(&missing, wait, &mnt)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no device /dev/initagent-no-such-disk appeared within 1 s"),
        "{error}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    std::fs::remove_dir_all(&dir).unwrap();
}
