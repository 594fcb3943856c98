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
