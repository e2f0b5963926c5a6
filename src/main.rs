fn main() {
    std::process::exit(spip::cli::main());
}
