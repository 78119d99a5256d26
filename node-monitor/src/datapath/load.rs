//! Loading the embedded eBPF object: the pin directory on a bpf filesystem (mounted when
//! missing), pinned maps adopted when their shape still fits and replaced when not, the
//! programs loaded into the kernel and the maps taken into a [`Datapath`].
use std::{
    collections::BTreeSet,
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapInfo, PerCpuArray},
};
use ipnet::IpNet;
use node_monitor_common::{
    GroupName, PORT_TABLE_ENTRIES, VERDICT_SLOTS, VerdictSlot, map_name, prog_name,
};
use tracing::{info, warn};

use super::{
    Datapath, DatapathError, GroupIds, Result,
    shapes::{MapShape, default_max_entries, expected_shapes},
};
use crate::config::Config;

/// The eBPF object, built by build.rs and embedded in the binary.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/node-monitor"));

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/node-monitor";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Sizes and pinning, fixed at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Pin maps and links here; None keeps everything in this process (tests, benchmarks).
    pub pin_dir: Option<PathBuf>,
}

macro_rules! take_map {
    ($ebpf:expr, $name:expr) => {{
        let m = $ebpf
            .take_map($name)
            .ok_or(DatapathError::MissingMap($name))?;
        m.try_into()
            .map_err(|error| DatapathError::Map { name: $name, error })?
    }};
}

impl Datapath {
    /// Loads the embedded object, adopting pinned maps that fit `cfg.limits`, and writes
    /// the config into the maps. Nothing is attached yet.
    pub fn load(cfg: &Config, node_subnets: &[IpNet], opts: &LoadOptions) -> Result<Datapath> {
        Self::load_object(EBPF_OBJECT, cfg, node_subnets, opts)
    }

    fn load_object(
        obj: &[u8],
        cfg: &Config,
        node_subnets: &[IpNet],
        opts: &LoadOptions,
    ) -> Result<Datapath> {
        if obj.is_empty() {
            return Err(DatapathError::EmptyObject);
        }
        let limits = cfg.limits.clone();
        let shapes = expected_shapes(&limits);
        let wake_mask = node_monitor_common::ring_wake_mask(limits.ring_buffer_bytes);
        let mut loader = EbpfLoader::new();
        loader.override_global(node_monitor_common::RING_WAKE_MASK_GLOBAL, &wake_mask, true);
        for (name, shape) in &shapes {
            if shape.max_entries != default_max_entries(name) {
                loader.map_max_entries(name, shape.max_entries);
            }
        }
        let mut adopted: BTreeSet<&'static str> = BTreeSet::new();
        let pin_paths = match &opts.pin_dir {
            Some(dir) => {
                prepare_pin_dir(dir)?;
                adopt_or_replace_pins(dir, &shapes, &mut adopted)?
            }
            None => Vec::new(),
        };
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(obj)?;
        load_programs(&mut ebpf)?;
        let group_names: Array<_, GroupName> = take_map!(ebpf, map_name::GROUP_NAMES);
        let prev_ids = GroupIds::read(&group_names)?;
        // A new port table is all zeros; an adopted one is read once, on the first write.
        let fresh =
            |name: &str| (!adopted.contains(name)).then(|| vec![0u8; PORT_TABLE_ENTRIES as usize]);
        let ports_shadow = [fresh(map_name::PORTS_TCP), fresh(map_name::PORTS_UDP)];
        let (flows, flow_counter) = super::counters::take_flows(&mut ebpf)?;
        let flood_hll = take_map!(ebpf, map_name::FLOOD_HLL);
        let flood_top = take_map!(ebpf, map_name::FLOOD_TOP);
        let flood_answers = take_map!(ebpf, map_name::FLOOD_ANSWERS);
        let mut dp = Datapath {
            ports_shadow,
            group_names,
            ports_tcp: take_map!(ebpf, map_name::PORTS_TCP),
            ports_udp: take_map!(ebpf, map_name::PORTS_UDP),
            allow_v4: take_map!(ebpf, map_name::ALLOW_V4),
            allow_v6: take_map!(ebpf, map_name::ALLOW_V6),
            port_allow_v4: take_map!(ebpf, map_name::PORT_ALLOW_V4),
            port_allow_v6: take_map!(ebpf, map_name::PORT_ALLOW_V6),
            port_marks: Default::default(),
            port_ranges: None,
            port_ranges_failures: 0,
            port_ranges_also_allow: None,
            settings: take_map!(ebpf, map_name::SETTINGS),
            stats: take_map!(ebpf, map_name::GROUP_STATS),
            reasons: take_map!(ebpf, map_name::REASONS),
            flows,
            flow_counter,
            events: Some(take_map!(ebpf, map_name::EVENTS)),
            ebpf,
            pin_dir: opts.pin_dir.clone(),
            ids: prev_ids,
            limits,
            links: Vec::new(),
            flood_hll,
            flood_top,
            flood_answers,
        };
        if !adopted.contains(map_name::SETTINGS) && adopted.contains(map_name::VERDICTS) {
            // A new settings slot would start its generations at 1, where an earlier run
            // started too: start above every generation the adopted verdict cache holds, so
            // that no verdict cached by that run is ever trusted.
            let top = highest_cached_generation(&dp.ebpf)?;
            if top != 0 {
                let mut settings = dp.read_settings()?;
                settings.generation = top;
                dp.write_settings(settings)?;
            }
        }
        // Marks in adopted port tables stand while the ranges they point at were adopted
        // too; otherwise they go (fail open) until the cluster's ranges are applied again.
        let ranges_adopted = [
            map_name::PORTS_TCP,
            map_name::PORTS_UDP,
            map_name::PORT_ALLOW_V4,
            map_name::PORT_ALLOW_V6,
        ]
        .iter()
        .all(|m| adopted.contains(m));
        if ranges_adopted {
            dp.adopt_port_marks()?;
        }
        dp.apply_config(cfg, node_subnets)?;
        // Flows adopted from an earlier run may have been opened under allowlists that are
        // not the ones this run found (replaced maps, or a settings slot that forgot the
        // last revocation): their next packets are checked against the running config.
        let kept_config = [
            map_name::ALLOW_V4,
            map_name::ALLOW_V6,
            map_name::PORT_ALLOW_V4,
            map_name::PORT_ALLOW_V6,
            map_name::PORTS_TCP,
            map_name::PORTS_UDP,
            map_name::SETTINGS,
        ]
        .iter()
        .all(|m| adopted.contains(m));
        if adopted.contains(map_name::FLOWS) && !kept_config {
            let mut settings = dp.read_settings()?;
            settings.revoked_generation = settings.generation;
            dp.write_settings(settings)?;
        }
        Ok(dp)
    }
}

/// The highest config generation any slot of the per-CPU verdict cache carries (0: none).
fn highest_cached_generation(ebpf: &Ebpf) -> Result<u32> {
    let name = map_name::VERDICTS;
    let map = ebpf.map(name).ok_or(DatapathError::MissingMap(name))?;
    let verdicts: PerCpuArray<_, VerdictSlot> =
        PerCpuArray::try_from(map).map_err(|error| DatapathError::Map { name, error })?;
    let mut top = 0;
    for slot in 0..VERDICT_SLOTS {
        let values = verdicts
            .get(&slot, 0)
            .map_err(|error| DatapathError::Map { name, error })?;
        top = values.iter().map(|v| v.generation).fold(top, u32::max);
    }
    Ok(top)
}

/// Decides, for every map, whether its pin under `dir/maps/` is adopted (it fits `shapes`:
/// recorded in `adopted`) or removed (the loader then creates and pins a new one). Returns
/// the pin path of every map.
fn adopt_or_replace_pins(
    dir: &Path,
    shapes: &[(&'static str, MapShape)],
    adopted: &mut BTreeSet<&'static str>,
) -> Result<Vec<(&'static str, PathBuf)>> {
    let mut pin_paths = Vec::new();
    for (name, shape) in shapes {
        let path = dir.join("maps").join(name);
        if path.exists() {
            let fits = match MapInfo::from_pin(&path) {
                Ok(info) => {
                    let have = MapShape::of(&info);
                    if have != *shape {
                        info!(map = name, ?have, want = ?shape, "pinned map no longer fits; replacing it");
                    }
                    have == *shape
                }
                Err(e) => {
                    warn!(map = name, error = %e, "pinned map unreadable; replacing it");
                    false
                }
            };
            if !fits {
                remove_pin(&path)?;
            } else {
                info!(map = name, "adopting pinned map");
                adopted.insert(*name);
            }
        }
        pin_paths.push((*name, path));
    }
    // Counters under ids we cannot map back to names would be misattributed: without
    // a usable GROUP_NAMES, the counters start over too.
    let names = dir.join("maps").join(map_name::GROUP_NAMES);
    let stats = dir.join("maps").join(map_name::GROUP_STATS);
    if !names.exists() && stats.exists() {
        info!("pinned counters without group names; counters start over");
        remove_pin(&stats)?;
    }
    Ok(pin_paths)
}

fn remove_pin(path: &Path) -> Result<()> {
    fs::remove_file(path).map_err(|error| DatapathError::PinDir {
        path: path.to_owned(),
        error,
    })
}

/// Loads the three attachable programs into the kernel (the baseline program is loaded
/// only on demand, by the benchmark).
fn load_programs(ebpf: &mut Ebpf) -> Result<()> {
    for name in [
        prog_name::XDP_INGRESS,
        prog_name::TC_INGRESS,
        prog_name::TC_EGRESS,
    ] {
        let prog = ebpf
            .program_mut(name)
            .ok_or(DatapathError::MissingProgram(name))?;
        let res = match prog {
            aya::programs::Program::Xdp(p) => p.load(),
            aya::programs::Program::SchedClassifier(p) => p.load(),
            _ => return Err(DatapathError::MissingProgram(name)),
        };
        res.map_err(|error| DatapathError::Program {
            name,
            error: Box::new(error),
        })?;
    }
    Ok(())
}

/// Makes sure `dir` is on a bpf filesystem (mounting /sys/fs/bpf when it is not) and that
/// its `maps/` and `links/` subdirectories exist.
fn prepare_pin_dir(dir: &Path) -> Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if dir.starts_with(root) && !is_bpffs(root) {
        mount_bpffs(root).map_err(|error| DatapathError::Bpffs {
            path: root.to_owned(),
            error,
        })?;
        let shared = fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|m| bpffs_mount_shared(&m, root));
        if shared != Some(true) {
            warn!(
                path = %root.display(),
                "mounted a new bpf filesystem that is not shared with the host's mount \
                 namespace (a private mount namespace: `ip netns exec`, or a container without \
                 the host's /sys/fs/bpf): the pins die with this daemon, so a restart adopts \
                 nothing and the programs stop counting while it is down; mount the host's \
                 /sys/fs/bpf here instead (README, \"Pins in a container\")"
            );
        }
    }
    for sub in ["maps", "links"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(|error| DatapathError::PinDir {
            path: p.clone(),
            error,
        })?;
    }
    if !is_bpffs(dir) {
        return Err(DatapathError::Bpffs {
            path: dir.to_owned(),
            error: io::Error::other("not a bpf filesystem"),
        });
    }
    Ok(())
}

/// Whether the bpf filesystem mounted at `mount_point` (the last such mount in
/// `/proc/self/mountinfo` text, the one on top) is in a shared peer group (`shared:N`): a
/// mount that propagates to the mount namespace it came from, where pins outlive this
/// process. `None` when no bpf filesystem is mounted there.
fn bpffs_mount_shared(mountinfo: &str, mount_point: &Path) -> Option<bool> {
    let mut found = None;
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        if fields.len() < 6
            || after.split(' ').next() != Some("bpf")
            || Path::new(fields[4]) != mount_point
        {
            continue;
        }
        found = Some(fields[6..].iter().any(|o| o.starts_with("shared:")));
    }
    found
}

fn is_bpffs(p: &Path) -> bool {
    use std::{ffi::CString, os::unix::ffi::OsStrExt};
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a valid out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &raw mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

fn mount_bpffs(p: &Path) -> io::Result<()> {
    use std::{ffi::CString, os::unix::ffi::OsStrExt};
    let target = CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let bpf = c"bpf";
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            bpf.as_ptr(),
            target.as_ptr(),
            bpf.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes everything node-monitor pinned under `dir`: detaches pinned links (unless a
/// running daemon holds them) and frees pinned maps.
pub fn unpin_all(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir (not a bpf filesystem), removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("nm-datapath-{tag}-{}", std::process::id()));
            fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_shared_bpffs_mount_is_told_from_a_private_one() {
        let root = Path::new("/sys/fs/bpf");
        let host = "22 1 0:21 / /sys rw shared:7 - sysfs sysfs rw\n\
                    45 22 0:40 / /sys/fs/bpf rw,relatime shared:9 - bpf bpf rw,mode=700\n";
        assert_eq!(bpffs_mount_shared(host, root), Some(true));
        // `ip netns exec`: a fresh /sys, then our own mount on it, in no peer group.
        let private = "300 290 0:77 / /sys rw,relatime - sysfs netns0 rw\n\
                       301 300 0:78 / /sys/fs/bpf rw,relatime - bpf bpf rw\n";
        assert_eq!(bpffs_mount_shared(private, root), Some(false));
        // The mount on top decides; a slave of the host's peer group is not shared back.
        let stacked = format!("{host}302 45 0:79 / /sys/fs/bpf rw master:9 - bpf bpf rw\n");
        assert_eq!(bpffs_mount_shared(&stacked, root), Some(false));
        assert_eq!(bpffs_mount_shared(host, Path::new("/mnt")), None);
        assert_eq!(bpffs_mount_shared("garbage\n\n - \n", root), None);
    }

    #[test]
    fn plain_directories_are_not_bpffs() {
        let t = TempDir::new("isbpf");
        assert!(!is_bpffs(&t.0));
        assert!(!is_bpffs(Path::new("/proc")));
        assert!(!is_bpffs(&t.0.join("missing")));
        assert!(
            !is_bpffs(Path::new("bad\0path")),
            "a NUL in the path is no panic"
        );
    }

    #[test]
    fn a_pin_dir_off_bpffs_is_refused_with_its_remedy() {
        let t = TempDir::new("prepare");
        let dir = t.0.join("pins");
        let e = prepare_pin_dir(&dir).expect_err("not on bpffs");
        assert!(
            matches!(&e, DatapathError::Bpffs { path, .. } if *path == dir),
            "{e:?}"
        );
        assert!(e.to_string().contains("--pin-dir"), "{e}");
        // The subdirectories are made before the check (as on bpffs).
        assert!(dir.join("maps").is_dir() && dir.join("links").is_dir());
    }

    #[test]
    fn pins_that_are_no_maps_are_removed_and_every_map_gets_a_pin_path() {
        let t = TempDir::new("adopt");
        let maps = t.0.join("maps");
        fs::create_dir_all(&maps).expect("maps dir");
        // Plain files are no maps: unreadable as a pin, so replaced.
        fs::write(maps.join(map_name::FLOWS), b"").expect("write");
        fs::write(maps.join(map_name::GROUP_STATS), b"").expect("write");
        let shapes = expected_shapes(&crate::config::Limits::DEFAULT);
        let mut adopted = BTreeSet::new();
        let paths = adopt_or_replace_pins(&t.0, &shapes, &mut adopted).expect("pins");
        assert!(adopted.is_empty());
        assert!(!maps.join(map_name::FLOWS).exists());
        assert!(!maps.join(map_name::GROUP_STATS).exists());
        assert_eq!(paths.len(), shapes.len());
        for ((name, path), (shape_name, _)) in paths.iter().zip(&shapes) {
            assert_eq!(name, shape_name);
            assert_eq!(*path, maps.join(name));
        }
    }

    #[test]
    fn unpin_all_removes_the_tree_and_accepts_a_missing_one() {
        let t = TempDir::new("unpin");
        let dir = t.0.join("pins");
        fs::create_dir_all(dir.join("maps")).expect("mkdir");
        fs::write(dir.join("maps").join("X"), b"").expect("write");
        unpin_all(&dir).expect("unpin");
        assert!(!dir.exists());
        unpin_all(&dir).expect("nothing to unpin is fine");
    }
}
