use super::*;
use crate::subject::{DatagramSubject, PlainUdp, SubjectError};
use tokio::sync::mpsc;

#[test]
fn a_datagram_checks_whole_and_nothing_else() {
    for seq in [0, 1, 7, 1000] {
        let d = datagram(seq);
        assert_eq!(check(&d), Some(seq));
        assert!(d.len() <= HEADER + 1147 + TRAILER);
        for at in [0, 5, 6, d.len() / 2, d.len() - 1] {
            let mut bad = d.clone();
            bad[at] ^= 0x10;
            assert_eq!(check(&bad), None, "byte {at} of {seq} altered");
        }
        assert_eq!(check(&d[..d.len() - 1]), None);
    }
    assert_eq!(check(b"abc"), None);
    // A well-formed datagram numbered beyond the bound is refused unread.
    let mut far = datagram(MAX_SEQ + 1);
    far.truncate(4);
    assert_eq!(check(&far), None);
}

/// The network as a queue: each datagram sent comes back as `echo` says
/// (dropped, twice, altered), and, past `silent_after` echoes, the
/// session fails after `gone` or never.
struct Looped {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    sent: u32,
    held: Option<Vec<u8>>,
    echo: fn(u32) -> Echo,
    silence: Option<(Arc<AtomicBool>, Option<Duration>)>,
    /// When the failure comes: fixed at the first wait, as the exchange
    /// drops a waiting `recv` to send.
    gone_at: Option<tokio::time::Instant>,
}

#[derive(Clone, Copy)]
enum Echo {
    Once,
    Lost,
    Twice,
    Altered,
    /// Held back and sent after the next one.
    Late,
}

impl Looped {
    fn new(echo: fn(u32) -> Echo) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Looped {
            tx,
            rx,
            sent: 0,
            held: None,
            echo,
            silence: None,
            gone_at: None,
        }
    }
}

impl DatagramSession for Looped {
    async fn send(&mut self, d: &[u8]) -> Result<(), SubjectError> {
        let n = self.sent;
        self.sent += 1;
        if self
            .silence
            .as_ref()
            .is_some_and(|(s, _)| s.load(Ordering::SeqCst))
        {
            return Ok(());
        }
        let _ = match (self.echo)(n) {
            Echo::Once => self.tx.send(d.to_vec()),
            Echo::Lost => Ok(()),
            Echo::Twice => self.tx.send(d.to_vec()).and(self.tx.send(d.to_vec())),
            Echo::Altered => {
                let mut bad = d.to_vec();
                bad[8] ^= 1;
                self.tx.send(bad)
            }
            Echo::Late => {
                self.held = Some(d.to_vec());
                return Ok(());
            }
        };
        if let Some(late) = self.held.take() {
            let _ = self.tx.send(late);
        }
        Ok(())
    }

    async fn recv(&mut self) -> Result<Option<Vec<u8>>, SubjectError> {
        if let Some((silence, gone)) = &self.silence {
            if silence.load(Ordering::SeqCst) {
                match gone {
                    Some(after) => {
                        let at = *self
                            .gone_at
                            .get_or_insert(tokio::time::Instant::now() + *after);
                        tokio::time::sleep_until(at).await;
                        return Err(SubjectError::new("looped", "recv", "peer gone"));
                    }
                    None => std::future::pending::<()>().await,
                }
            }
        }
        Ok(self.rx.recv().await)
    }

    async fn close(&mut self) -> Result<(), SubjectError> {
        Ok(())
    }
}

fn plan(count: u32) -> DatagramPlan {
    DatagramPlan {
        count,
        interval: Duration::from_millis(1),
        drain: Duration::from_millis(300),
        stale_after: None,
        silence: Arc::new(AtomicBool::new(false)),
        gone_limit: None,
        epoch: Instant::now(),
    }
}

async fn looped(session: &mut Looped, plan: &DatagramPlan) -> (ClientLog, Arrivals) {
    let mut log = ClientLog::default();
    let mut arrivals = Arrivals::default();
    timeout(
        Duration::from_secs(20),
        client(session, plan, &mut log, &mut arrivals),
    )
    .await
    .expect("the client ends by itself");
    (log, arrivals)
}

#[tokio::test]
async fn the_client_counts_loss_repeats_order_and_alterations() {
    let mut s = Looped::new(|n| match n % 10 {
        1 => Echo::Lost,
        2 => Echo::Twice,
        3 => Echo::Altered,
        5 => Echo::Late,
        _ => Echo::Once,
    });
    let (log, arrivals) = looped(&mut s, &plan(40)).await;
    assert!(log.completed, "{log:?}");
    assert_eq!(log.messages.len(), 40);
    let echoed: Vec<u32> = log
        .messages
        .iter()
        .filter(|m| m.echoed.is_some())
        .map(|m| m.seq)
        .collect();
    // Lost (x1) and altered (x3) ones never count as echoed.
    assert_eq!(echoed.len(), 40 - 4 - 4);
    assert!(echoed.iter().all(|s| s % 10 != 1 && s % 10 != 3));
    assert_eq!(log.wrong, 4);
    assert_eq!(
        arrivals,
        Arrivals {
            duplicates: 4,
            reordered: 4
        }
    );
    assert!(log
        .messages
        .iter()
        .all(|m| m.echoed.is_none_or(|e| e >= m.sent)));
}

#[tokio::test]
async fn a_silent_peer_is_declared_gone_or_the_limit_says_it_was_not() {
    // Declared gone 100 ms after the silence, within a limit of 2 s.
    let mut s = Looped::new(|_| Echo::Once);
    let mut p = plan(1000);
    p.stale_after = Some(5);
    p.gone_limit = Some(Duration::from_secs(2));
    s.silence = Some((p.silence.clone(), Some(Duration::from_millis(100))));
    let (log, _) = looped(&mut s, &p).await;
    assert!(p.silence.load(Ordering::SeqCst));
    let after = log.failed_at.expect("failed") - log.silenced_at.expect("silenced");
    assert!(
        log.error
            .as_deref()
            .is_some_and(|e| e.contains("peer gone")),
        "{log:?}"
    );
    assert!((0.05..2.0).contains(&after), "{after}");

    // Never declared: the plan's limit ends it, and says so.
    let mut s = Looped::new(|_| Echo::Once);
    let mut p = plan(1000);
    p.stale_after = Some(5);
    p.gone_limit = Some(Duration::from_millis(300));
    s.silence = Some((p.silence.clone(), None));
    let (log, _) = looped(&mut s, &p).await;
    let reason = log.error.expect("a reason");
    assert!(reason.contains("did not declare"), "{reason}");
    // Sending went on after the silence, until the limit (not to the count).
    assert!(log.messages.len() < 1000, "{}", log.messages.len());

    // No way to notice (plain UDP): the run sends its count and drains.
    let mut s = Looped::new(|_| Echo::Once);
    let mut p = plan(30);
    p.stale_after = Some(5);
    s.silence = Some((p.silence.clone(), None));
    let (log, _) = looped(&mut s, &p).await;
    assert!(log.completed && log.error.is_none(), "{log:?}");
    assert_eq!(log.messages.len(), 30);
    assert!(log.silenced_at.is_some());
}

#[tokio::test]
async fn plain_udp_over_loopback_echoes_everything() {
    let subject = PlainUdp;
    let (mut listening, addr) = subject
        .listen("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("listen");
    let epoch = Instant::now();
    let server = tokio::spawn(async move {
        let mut s = PlainUdp.take(&mut listening).await.expect("session");
        let mut log = ServerLog::default();
        let mut arrivals = Arrivals::default();
        // Plain UDP has no end: the server is stopped by the test.
        let _ = timeout(
            Duration::from_secs(3),
            server(&mut s, epoch, &mut log, &mut arrivals),
        )
        .await;
        (log, arrivals)
    });
    let mut session = subject.dial(addr).await.expect("dial");
    let mut p = plan(50);
    p.epoch = epoch;
    let mut log = ClientLog::default();
    let mut arrivals = Arrivals::default();
    client(&mut session, &p, &mut log, &mut arrivals).await;
    assert!(log.completed, "{log:?}");
    assert!(log.messages.iter().all(|m| m.echoed.is_some()));
    assert_eq!((log.wrong, arrivals), (0, Arrivals::default()));
    let (slog, sarrivals) = server.await.expect("server");
    assert_eq!(slog.wrong, 0);
    assert_eq!(slog.received.len(), 50);
    assert_eq!(sarrivals.duplicates, 0);
}
