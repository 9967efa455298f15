//! Benchmark (ignored test; run by `containerd-plugin/bench.sh`): containerd 1.6 CRI pull +
//! unpack of one image with a 256 MiB layer, plain vs encrypted for a JWE key on the node vs
//! encrypted for a group (key released by the real broker), in the same run, interleaved,
//! several rounds; prints a Markdown table with medians and the ratio to plain.
//!
//! Each pull starts from nothing: the image is removed after every pull (the CRI deletes
//! synchronously, so its content and snapshots are gone) and the test checks that no snapshot
//! of the image's chain is left before the next pull (the snapshot-reuse trap).
//!
//! Env: `BENCH_MIB` (layer size, default 256), `BENCH_ROUNDS` (default 5), `BENCH_COMP`
//! (`gzip` default, or `tar`).

#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

mod harness;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::broker::{broker_binary, Broker, Oidc};
use harness::containerd::Containerd;
use harness::cri::Cri;
use harness::image::{self, Comp, Layer};
use harness::registry::Registry;
use layercrypt_group::client::HttpBrokers;
use layercrypt_group::wrap::{group_param, GroupKeyWrapper};
use layercrypt_ocicrypt::keys::{generate_keypair, load_public_key, KeyKind};
use layercrypt_ocicrypt::layer::Wrappers;
use layercrypt_ocicrypt::{EncryptConfig, ProviderRecipient};

const DECODER: &str = env!("CARGO_BIN_EXE_layercrypt-decoder");
const VO: &str = "bench.example.org";
const ENTITLEMENT: &str = "urn:mace:egi.eu:group:bench.example.org#aai.egi.eu";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn chain_id(diff_ids: &[String]) -> String {
    let mut chain = diff_ids[0].clone();
    for d in &diff_ids[1..] {
        chain = image::sha256(format!("{chain} {d}").as_bytes());
    }
    chain
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: run containerd-plugin/bench.sh"]
fn bench_pull_unpack_256mib() {
    let mib = env_or("BENCH_MIB", 256);
    let rounds = env_or("BENCH_ROUNDS", 5);
    let comp = match std::env::var("BENCH_COMP").as_deref() {
        Ok("tar") => Comp::Tar,
        _ => Comp::Gzip,
    };
    let load_before = loadavg();
    let tmp = tempfile::Builder::new()
        .prefix("lc-bench")
        .tempdir()
        .unwrap();
    let dir = tmp.path();

    let oidc = Oidc::start(dir);
    let broker = Broker::start(dir, &broker_binary(Path::new(DECODER)), &oidc.issuer);
    broker.group(VO, ENTITLEMENT);
    let token_file = dir.join("node-token");
    std::fs::write(
        &token_file,
        oidc.mint("bench-node@example.org", &[ENTITLEMENT]),
    )
    .unwrap();
    let node_config = dir.join("node.toml");
    std::fs::write(
        &node_config,
        format!(
            "brokers = [\"{}\"]\n[credential]\nkind = \"token-file\"\ntoken_file = \"{}\"\n",
            broker.url,
            token_file.display()
        ),
    )
    .unwrap();
    let keys = dir.join("node-keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (private, public) = generate_keypair(KeyKind::EcP256).unwrap();
    std::fs::write(keys.join("node.pem"), private.expose_secret()).unwrap();
    let pubfile = dir.join("node.pub.pem");
    std::fs::write(&pubfile, public).unwrap();
    let mut jwe_ec = EncryptConfig::default();
    jwe_ec.jwe.push(load_public_key(&pubfile).unwrap());

    let registry = Registry::start(dir);
    // BENCH_DECODER: another decoder command for containerd (a timing wrapper, for example).
    let decoder = std::env::var("BENCH_DECODER").unwrap_or_else(|_| DECODER.to_owned());
    let containerd = Containerd::start_with(
        dir,
        Path::new(&decoder),
        &keys,
        &registry.host(),
        Some(&node_config),
    );
    let mut cri = Cri::connect(&containerd.socket);
    harness::wait_for("the CRI plugin", Duration::from_secs(30), || {
        cri.status("127.0.0.1/none:x").is_ok()
    });

    // One layer of pseudo-random bytes (incompressible: gzip does not shrink it).
    let t = Instant::now();
    let mut data = vec![0u8; mib * 1024 * 1024];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let plain = dir.join("images/plain");
    let diff_ids = image::build_layout(
        &plain,
        &[Layer {
            files: vec![("data/big.bin".into(), data, 0o644)],
            symlinks: vec![],
            comp,
        }],
        &["/bin/true"],
    );
    let group_w = {
        let api = HttpBrokers::new(Box::new(|| {
            Err(layercrypt_group::Error::Token("not needed".into()))
        }));
        let mut w = Wrappers::new();
        w.push(Box::new(
            GroupKeyWrapper::new(Arc::new(api))
                .with_broker(&broker.url)
                .unwrap(),
        ));
        w
    };
    let group_ec = EncryptConfig {
        providers: vec![ProviderRecipient {
            name: "layercrypt".into(),
            param: Some(group_param(&VO.parse().unwrap())),
        }],
        ..Default::default()
    };
    let host = registry.host();
    let plain_ref = format!("{host}/bench/plain:latest");
    image::push(&plain, &plain_ref);
    let jwe = dir.join("images/jwe");
    image::encrypt(&plain, &jwe, &jwe_ec, vec![]);
    let jwe_ref = format!("{host}/bench/jwe:latest");
    image::push(&jwe, &jwe_ref);
    let grp = dir.join("images/group");
    image::encrypt_with(&plain, &grp, &group_w, &group_ec, vec![]);
    let grp_ref = format!("{host}/bench/group:latest");
    image::push(&grp, &grp_ref);
    eprintln!("images built, encrypted and pushed in {:?}", t.elapsed());

    let chain = chain_id(&diff_ids);
    let variants = [
        ("plain", plain_ref.as_str()),
        ("encrypted, JWE key on the node", jwe_ref.as_str()),
        ("encrypted, group via broker", grp_ref.as_str()),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, (name, r)) in variants.iter().enumerate() {
            let snaps = containerd.ctr(&["snapshots", "--snapshotter", "overlayfs", "ls"]);
            assert!(
                !String::from_utf8_lossy(&snaps.stdout).contains(&chain),
                "a snapshot of the image is left: the pull would not unpack"
            );
            // Dirty pages of the previous round (its content and snapshot, 2 x the layer) would
            // otherwise be written back during this pull and bill it for the previous one.
            let synced = std::process::Command::new("sync").status();
            assert!(synced.is_ok_and(|s| s.success()), "sync failed");
            let t = Instant::now();
            cri.pull(r)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", containerd.log_tail()));
            let secs = t.elapsed().as_secs_f64();
            let snaps = containerd.ctr(&["snapshots", "--snapshotter", "overlayfs", "ls"]);
            assert!(
                String::from_utf8_lossy(&snaps.stdout).contains(&chain),
                "{name}: not unpacked with the right diff_ids"
            );
            cri.remove(r).unwrap();
            eprintln!("round {round} {name}: {secs:.2} s");
            times[i].push(secs);
        }
    }
    let load_after = loadavg();
    let mut plain_median = 0.0;
    println!();
    println!(
        "containerd 1.6.20 CRI PullImage + unpack, one {mib} MiB layer ({}), {rounds} rounds interleaved, local registry; load average before: {load_before}, after: {load_after}",
        match comp {
            Comp::Gzip => "tar+gzip, incompressible data",
            _ => "uncompressed tar",
        }
    );
    println!();
    println!("| variant | median (s) | min (s) | max (s) | vs plain |");
    println!("|---|---:|---:|---:|---:|");
    for (i, (name, _)) in variants.iter().enumerate() {
        let mut v = times[i].clone();
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(0.0, f64::max);
        let m = median(&mut v);
        if i == 0 {
            plain_median = m;
        }
        println!(
            "| {name} | {m:.2} | {min:.2} | {max:.2} | {:+.1} % |",
            (m / plain_median - 1.0) * 100.0
        );
    }
    drop(cri);
    drop(containerd);
    drop(registry);
    drop(broker);
    drop(oidc);
}
