//! Streams, devices, threads and the array runtime.

use mlx_rs::ops;
use mlx_rs::{Array, Device, DeviceType, Stream, ThreadLocalStream, with_device, with_stream};

#[test]
fn the_linked_mlx_is_the_pinned_version() {
    assert_eq!(mlx_rs::version().unwrap(), "0.32.2");
}

#[test]
fn independent_graphs_evaluate_correctly_on_several_threads_at_once() {
    let handles: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                for round in 0..20 {
                    let base = (t * 100 + round) as f32;
                    let values: Vec<f32> = (0..64).map(|i| base + i as f32).collect();
                    let a = Array::from_slice(&values, &[8, 8]).unwrap();
                    let b = ops::multiply(ops::add(&a, 1.0f32).unwrap(), 2.0f32).unwrap();
                    let expected: Vec<f32> = values.iter().map(|v| (v + 1.0) * 2.0).collect();
                    assert_eq!(
                        b.to_vec::<f32>().unwrap(),
                        expected,
                        "thread {t}, round {round}"
                    );
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("a worker thread panicked");
    }
}

#[test]
fn evaluated_arrays_move_between_threads() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let b = std::thread::spawn(move || {
        let b = ops::multiply(&a, 3.0f32).unwrap();
        b.eval().unwrap();
        b
    })
    .join()
    .unwrap();
    assert_eq!(b.to_vec::<f32>().unwrap(), [3.0, 6.0, 9.0]);
}

#[test]
fn evaluating_on_another_thread_than_the_stream_s_is_an_error_not_a_crash() {
    // MLX 0.32's default streams belong to the thread that made them.
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let lazy = std::thread::spawn(move || ops::multiply(&a, 3.0f32).unwrap())
        .join()
        .unwrap();
    match lazy.eval() {
        Err(mlx_rs::Error::Mlx { message }) => assert!(message.contains("Stream"), "{message}"),
        other => panic!("expected MLX's stream error, got {other:?}"),
    }
}

#[test]
fn scopes_set_the_stream_and_restore_it() {
    let cpu = Device::cpu();
    assert_eq!(cpu.device_type().unwrap(), DeviceType::Cpu);
    let outer = Stream::current().unwrap();
    let default_cpu = Stream::default_for(&cpu).unwrap();
    let inner = with_device(&cpu, Stream::current).unwrap().unwrap();
    // with_device reuses the device's default stream rather than making one.
    assert_eq!(inner, default_cpu);
    let fresh = Stream::new(&cpu).unwrap();
    assert_ne!(fresh, default_cpu);
    let seen = with_stream(&fresh, || {
        let nested = with_device(&cpu, Stream::current).unwrap().unwrap();
        (Stream::current().unwrap(), nested)
    });
    assert_eq!(seen.0, fresh);
    assert_eq!(seen.1, default_cpu);
    assert_eq!(Stream::current().unwrap(), outer);
    // A panic inside a scope still pops it.
    let _ = std::panic::catch_unwind(|| with_stream(&fresh, || panic!("inside a scope")));
    assert_eq!(Stream::current().unwrap(), outer);
}

#[test]
fn work_runs_on_the_scoped_stream() {
    let cpu = Device::cpu();
    let stream = Stream::new(&cpu).unwrap();
    let a = Array::from_slice(&[1i32, 2], &[2]).unwrap();
    let b = with_stream(&stream, || ops::add(&a, 5).unwrap());
    stream.synchronize().unwrap();
    assert_eq!(b.to_vec::<i32>().unwrap(), [6, 7]);
    assert!(Stream::all().unwrap().contains(&stream));
}

#[test]
fn thread_local_streams_resolve_per_thread() {
    let tls = ThreadLocalStream::new(&Device::cpu()).unwrap();
    let here = tls.stream().unwrap();
    let shared = tls.clone();
    let there = std::thread::spawn(move || shared.stream().unwrap().index().unwrap())
        .join()
        .unwrap();
    assert_ne!(here.index().unwrap(), there);
    tls.synchronize().unwrap();
}

#[test]
fn the_gpu_is_reported_missing_on_a_cpu_build() {
    if Device::gpu().is_available().unwrap() {
        return; // a Metal or CUDA build
    }
    assert!(Stream::default_gpu().is_err());
    assert!(with_device(&Device::gpu(), || ()).is_err());
}

#[test]
fn owned_vectors_become_arrays_without_a_copy_and_keep_their_values() {
    let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
    let a = Array::from_vec_shaped(values.clone(), &[10, 100]).unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), values);
    let doubled = ops::multiply(&a, 2.0f32).unwrap();
    drop(a);
    assert_eq!(doubled.to_vec::<f32>().unwrap()[999], 999.0);
    assert!(Array::from_vec_shaped(vec![1.0f32; 3], &[2, 2]).is_err());
}

#[test]
fn evaluation_state_and_layout_flags() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let b = ops::add(&a, 1.0f32).unwrap();
    assert!(!b.is_available().unwrap());
    mlx_rs::async_eval([&b]).unwrap();
    b.wait().unwrap();
    assert!(b.is_available().unwrap());
    assert!(b.is_row_contiguous().unwrap());
    assert!(b.is_contiguous().unwrap());
    assert!(!b.is_col_contiguous().unwrap());
    assert_eq!(b.dim(-1).unwrap(), 2);
    assert!(b.dim(2).is_err());
}

/// A graph of a few dozen nodes over `x`, evaluated lazily.
fn lazy_graph(x: &Array, round: usize) -> Array {
    let mut y = ops::multiply(x, 0.5f32).unwrap();
    for step in 0..12 {
        let scaled = ops::multiply(&y, 1.0f32 + (round + step) as f32 * 1e-3).unwrap();
        y = ops::add(ops::sin(&scaled).unwrap(), x).unwrap();
    }
    ops::sum(&y, [1], false).unwrap()
}

#[test]
fn array_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Array>();
    send_sync::<Stream>();
    send_sync::<Device>();
    send_sync::<ThreadLocalStream>();
}

#[test]
fn clones_of_one_lazy_array_evaluate_concurrently_without_crashing() {
    // Without mlx-rs's process-wide lock this crashed inside
    // `mlx::core::eval_impl`: MLX does not synchronise threads evaluating
    // the same graph.
    // SAFETY: the stream is only used through mlx-rs, whose process-wide
    // lock keeps two threads from using it at once.
    let stream = unsafe { Stream::new_thread_unsafe(&Device::cpu()) }.unwrap();
    let values: Vec<f32> = (0..256).map(|i| i as f32 * 0.01).collect();
    let x = Array::from_slice(&values, &[16, 16]).unwrap();
    x.eval().unwrap();
    for round in 0..40 {
        let expected = with_stream(&stream, || lazy_graph(&x, round))
            .to_vec::<f32>()
            .unwrap();
        let lazy = with_stream(&stream, || lazy_graph(&x, round));
        let results: Vec<Vec<f32>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|t| {
                    let clone = lazy.clone();
                    let shared = &lazy;
                    s.spawn(move || {
                        // Half the threads evaluate a clone, half share `&Array`.
                        if t % 2 == 0 {
                            clone.eval().unwrap();
                            clone.to_vec::<f32>().unwrap()
                        } else {
                            shared.to_vec::<f32>().unwrap()
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a worker thread panicked"))
                .collect()
        });
        for (t, result) in results.iter().enumerate() {
            assert_eq!(result, &expected, "round {round}, thread {t}");
        }
    }
}

#[test]
fn graphs_over_shared_weights_build_and_evaluate_on_several_threads_at_once() {
    let w: Vec<f32> = (0..64 * 32)
        .map(|i| ((i % 17) as f32 - 8.0) * 0.05)
        .collect();
    let weights = Array::from_slice(&w, &[64, 32]).unwrap();
    let bias = Array::from_slice(&[0.25f32; 32], &[32]).unwrap();
    mlx_rs::eval([&weights, &bias]).unwrap();
    let input = |t: usize| {
        let v: Vec<f32> = (0..8 * 64)
            .map(|i| ((i + t * 7) % 13) as f32 * 0.1)
            .collect();
        Array::from_slice(&v, &[8, 64]).unwrap()
    };
    let forward = |x: &Array| {
        let h = ops::add(ops::matmul(x, &weights).unwrap(), &bias).unwrap();
        let h = ops::maximum(&h, 0.0f32).unwrap();
        ops::sum(&ops::multiply(&h, &h).unwrap(), [1], false).unwrap()
    };
    let expected: Vec<Vec<f32>> = (0..4)
        .map(|t| forward(&input(t)).to_vec::<f32>().unwrap())
        .collect();
    for round in 0..10 {
        std::thread::scope(|s| {
            for (t, expected) in expected.iter().enumerate() {
                let forward = &forward;
                s.spawn(move || {
                    // Each thread builds its graph on its own default stream.
                    let out = forward(&input(t));
                    assert_eq!(&out.to_vec::<f32>().unwrap(), expected, "round {round}");
                });
            }
        });
    }
}
