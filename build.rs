// Link settings for every binary, test and bench that loads LibTorch (the workspace's
// binary crates include this file as their own build script):
// - an rpath to LibTorch's directory, so nothing depends on LD_LIBRARY_PATH;
// - `libtorch_cuda` kept as a dependency although no symbol of it is referenced, so
//   CUDA is usable when a GPU is present (the linker's --as-needed would drop it);
// - the default location of torchvision's operator library made by scripts/setup.sh.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=VIDINFER_CACHE");
    if let Ok(cache) = std::env::var("VIDINFER_CACHE") {
        println!(
            "cargo:rustc-env=VIDINFER_BUILD_TORCHVISION_OPS={cache}/lib/libtorchvision_ops.so"
        );
    }
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
