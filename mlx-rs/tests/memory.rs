//! Memory counters and limits, and the GPU backends' queries.
//!
//! The counters are process-wide, so every check of them is in the one
//! test function of this binary: nothing else allocates arrays meanwhile.
//! The GPU test allocates no arrays.

use mlx_rs::gpu::{self, DeviceInfoValue};
use mlx_rs::{Device, Dtype, Error, memory, random};

const MIB: usize = 1 << 20;

#[test]
fn memory_counters_and_limits_respond() {
    // Limits round-trip: each setter returns the value before it.
    let limit = memory::get_memory_limit().unwrap();
    assert!(limit > 0);
    assert_eq!(memory::set_memory_limit(512 * MIB).unwrap(), limit);
    assert_eq!(memory::get_memory_limit().unwrap(), 512 * MIB);
    assert_eq!(memory::set_memory_limit(limit).unwrap(), 512 * MIB);
    assert_eq!(memory::get_memory_limit().unwrap(), limit);

    let cache_limit = memory::set_cache_limit(256 * MIB).unwrap();
    assert_eq!(memory::set_cache_limit(cache_limit).unwrap(), 256 * MIB);

    // The wired limit only matters to Metal; elsewhere MLX reports 0.
    let wired = memory::set_wired_limit(0).unwrap();
    assert_eq!(memory::set_wired_limit(wired).unwrap(), 0);

    // Active memory grows by an evaluated array and falls when it is
    // dropped; the freed buffer goes to the cache.
    memory::clear_cache().unwrap();
    assert_eq!(memory::get_cache_memory().unwrap(), 0);
    let before = memory::get_active_memory().unwrap();
    let key = random::key(0).unwrap();
    let big = random::uniform(0, 1, &[4 * MIB as i32], Dtype::Float32, Some(&key)).unwrap();
    big.eval().unwrap();
    let with_big = memory::get_active_memory().unwrap();
    assert!(
        with_big >= before + 16 * MIB,
        "active memory went from {before} to {with_big} for a 16 MiB array"
    );
    let peak = memory::get_peak_memory().unwrap();
    assert!(peak >= with_big, "peak {peak} < active {with_big}");

    drop(big);
    let after = memory::get_active_memory().unwrap();
    assert!(
        after + 16 * MIB <= with_big,
        "active memory only fell from {with_big} to {after}"
    );
    assert!(memory::get_cache_memory().unwrap() >= 16 * MIB);
    memory::clear_cache().unwrap();
    assert_eq!(memory::get_cache_memory().unwrap(), 0);

    // Resetting the peak forgets the big array; a smaller one sets a new,
    // lower peak.
    memory::reset_peak_memory().unwrap();
    let reset = memory::get_peak_memory().unwrap();
    assert!(reset < 16 * MIB, "peak after reset is {reset}");
    let small = random::uniform(0, 1, &[MIB as i32], Dtype::Float32, Some(&key)).unwrap();
    small.eval().unwrap();
    let small_peak = memory::get_peak_memory().unwrap();
    assert!(
        (4 * MIB..peak).contains(&small_peak),
        "peak after a 4 MiB array is {small_peak} (before reset: {peak})"
    );
}

#[test]
fn gpu_backends_report_this_machine() {
    let metal = gpu::metal::is_available().unwrap();
    let cuda = gpu::cuda::is_available().unwrap();
    if cfg!(not(target_os = "macos")) {
        assert!(!metal);
        // On Linux the GPU device is CUDA's, if this MLX has it.
        assert_eq!(cuda, Device::gpu().is_available().unwrap());
    }

    if !metal {
        // MLX without Metal would silently ignore these; here they fail.
        let dir = std::env::temp_dir();
        for result in [
            gpu::metal::start_capture(dir.join("mlx-rs-test.gputrace")),
            gpu::metal::stop_capture(),
            gpu::metal::set_metallib_path(dir.join("mlx.metallib")),
        ] {
            match result {
                Err(Error::InvalidArgument(message)) => {
                    assert!(message.contains("Metal is not available"), "{message}")
                }
                other => panic!("expected an error without Metal, got {other:?}"),
            }
        }
        match gpu::metal::get_metallib_path() {
            Err(Error::Mlx { message }) => assert!(message.contains("metallib"), "{message}"),
            other => panic!("expected MLX's error without Metal, got {other:?}"),
        }
    }

    let cpu = gpu::device_info(&Device::cpu()).unwrap();
    for key in ["device_name", "architecture"] {
        match cpu.get(key) {
            Some(DeviceInfoValue::String(text)) => assert!(!text.is_empty(), "{key} is empty"),
            other => panic!("device_info(cpu)[{key:?}] is {other:?}"),
        }
    }
    assert_eq!(
        cpu["architecture"].as_str(),
        Some(std::env::consts::ARCH),
        "{cpu:?}"
    );

    let gpu_info = gpu::device_info(&Device::gpu()).unwrap();
    if !Device::gpu().is_available().unwrap() {
        assert!(gpu_info.is_empty(), "{gpu_info:?}");
    } else {
        assert!(
            gpu_info.values().any(|v| v.as_size().is_some()),
            "{gpu_info:?}"
        );
    }
}
