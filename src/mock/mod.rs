//! TEMP STUB (replaced by the mock branch)
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MockConfig {
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
}
pub struct MockServer;
impl MockServer {
    pub async fn start(_c: MockConfig, _a: std::net::SocketAddr) -> std::io::Result<MockServer> {
        todo!()
    }
    pub fn base_url(&self) -> String {
        todo!()
    }
    pub async fn shutdown(self) {}
}
pub async fn serve(_c: MockConfig, _p: u16) -> anyhow::Result<()> {
    todo!()
}
