//! Speculative page prefetching for offset and page-number pagination.
//!
//! With these two schemes the next page's token is known before the current page arrives
//! (`offset + limit`, `page + 1`), so up to `rate_limit.concurrency` pages can be in flight
//! at once. The prefetcher only fetches: it hands the responses back strictly in page
//! order, and the caller still runs every page through the [`Paginator`], which alone
//! decides whether the stream goes on. Speculation is checked, never trusted:
//!
//! - a sequence starts with one request; pages are fetched ahead only once the paginator
//!   has confirmed a predicted successor (so a one-page child sequence costs one request);
//! - when the paginator asks for a token other than the one predicted (a short or empty
//!   page ended the stream, a total was reached, the API returned more than `limit`), every
//!   page fetched ahead is discarded and fetching resumes from the paginator's token;
//! - no page past `max_pages` is ever requested;
//! - each request goes through the client as usual, so retries, rate limits, the
//!   concurrency cap and the circuit breaker apply to speculative requests too;
//! - dropping the prefetcher (end of sequence, cancellation) aborts what is still in
//!   flight.
//!
//! [`Paginator`]: crate::pagination::Paginator

use std::collections::VecDeque;
use std::future::Future;

use futures::FutureExt;
use tokio_util::task::AbortOnDropHandle;

use crate::http::{HttpError, Response};
use crate::pagination::PageToken;
use crate::pagination::ahead::Step;
use crate::pagination::config::PaginationConfig;

/// The requests a fetch result took, so discarded speculative pages are still counted.
pub trait Attempts {
    /// Requests sent, the first included.
    fn attempts(&self) -> u32;
}

impl Attempts for Result<Response, HttpError> {
    fn attempts(&self) -> u32 {
        match self {
            Ok(response) => response.attempts,
            Err(error) => error.attempt,
        }
    }
}

/// Requests made for pages fetched ahead and then discarded. Requests still in flight when
/// they were aborted are not counted: whether they reached the source is unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Discarded {
    pub requests: u64,
    pub retries: u64,
}

struct Slot<T> {
    token: PageToken,
    handle: AbortOnDropHandle<T>,
}

/// Fetches up to `depth` pages of one page sequence at once and yields them in order.
pub struct Prefetcher<T> {
    step: Step,
    depth: usize,
    max_pages: Option<u64>,
    /// Pages of the sequence handed out so far.
    delivered: u64,
    /// The token of the last page handed out.
    last: Option<PageToken>,
    /// Pages in flight or fetched, in page order; the front is the next one wanted.
    window: VecDeque<Slot<T>>,
    discarded: Discarded,
}

impl<T: Attempts + Send + 'static> Prefetcher<T> {
    /// A prefetcher for one page sequence, or `None` when pages cannot be fetched ahead:
    /// the pagination does not predict its next token, or `concurrency` is 1.
    pub fn new(pagination: &PaginationConfig, concurrency: u32) -> Option<Self> {
        let step = pagination.step()?;
        (concurrency > 1).then(|| Self {
            step,
            depth: concurrency as usize,
            max_pages: pagination.max_pages(),
            delivered: 0,
            last: None,
            window: VecDeque::new(),
            discarded: Discarded::default(),
        })
    }

    /// The result for the page `token`, the next page of the sequence. `launch(token,
    /// ahead)` starts the fetch of `token`, `ahead` pages after the wanted one (0 for the
    /// wanted page itself); it runs on its own task.
    ///
    /// # Panics
    ///
    /// Resumes the panic of a fetch task that panicked.
    pub async fn next<F, Fut>(&mut self, token: &PageToken, mut launch: F) -> T
    where
        F: FnMut(&PageToken, u64) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        if self.window.front().is_some_and(|slot| slot.token != *token) {
            self.discard_window();
        }
        let confirmed = self.last.as_ref().and_then(|last| self.step.after(last)).as_ref() == Some(token);
        let depth = if confirmed { self.depth } else { 1 };
        if self.window.is_empty() {
            self.window.push_back(Slot {
                token: token.clone(),
                handle: AbortOnDropHandle::new(tokio::spawn(launch(token, 0))),
            });
        }
        while self.window.len() < depth {
            let ahead = self.window.len() as u64;
            if self
                .max_pages
                .is_some_and(|max_pages| self.delivered + 1 + ahead > max_pages)
            {
                break;
            }
            let back = &self.window.back().expect("the wanted page is in the window").token;
            let Some(next) = self.step.after(back) else { break };
            let handle = AbortOnDropHandle::new(tokio::spawn(launch(&next, ahead)));
            self.window.push_back(Slot { token: next, handle });
        }
        let slot = self.window.pop_front().expect("the wanted page is in the window");
        self.delivered += 1;
        self.last = Some(token.clone());
        match slot.handle.await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("page fetch task stopped: {error}"),
        }
    }

    /// Ends the sequence: aborts what is still in flight and returns what the discarded
    /// pages cost.
    pub fn finish(mut self) -> Discarded {
        self.discard_window();
        self.discarded
    }

    fn discard_window(&mut self) {
        for mut slot in self.window.drain(..) {
            if slot.handle.is_finished()
                && let Some(Ok(result)) = (&mut slot.handle).now_or_never()
            {
                let attempts = u64::from(result.attempts());
                self.discarded.requests += attempts;
                self.discarded.retries += attempts.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::oneshot;

    use super::*;

    /// A fake page result: the token it was fetched for.
    #[derive(Debug, PartialEq)]
    struct Fetched(PageToken);

    impl Attempts for Fetched {
        fn attempts(&self) -> u32 {
            1
        }
    }

    fn offset(limit: u64, max_pages: Option<u64>) -> PaginationConfig {
        PaginationConfig::Offset {
            offset_param: "offset".into(),
            limit_param: "limit".into(),
            limit: std::num::NonZeroU64::new(limit).unwrap(),
            total_path: None,
            inject_into: Default::default(),
            max_pages: max_pages.and_then(std::num::NonZeroU64::new),
        }
    }

    /// A launched fetch waiting for the test to let it finish.
    type Gate = (PageToken, oneshot::Sender<()>);

    /// Fetches that complete only when the test releases them, and a log of launches.
    #[derive(Clone, Default)]
    struct Gates {
        launched: Arc<Mutex<Vec<(PageToken, u64)>>>,
        release: Arc<Mutex<Vec<Gate>>>,
    }

    impl Gates {
        fn launch(&self) -> impl FnMut(&PageToken, u64) -> futures::future::BoxFuture<'static, Fetched> + use<> {
            let gates = self.clone();
            move |token, ahead| {
                let (sender, receiver) = oneshot::channel();
                gates.launched.lock().unwrap().push((token.clone(), ahead));
                gates.release.lock().unwrap().push((token.clone(), sender));
                let token = token.clone();
                async move {
                    let _ = receiver.await;
                    Fetched(token)
                }
                .boxed()
            }
        }

        fn open(&self, token: &PageToken) {
            let mut release = self.release.lock().unwrap();
            let index = release.iter().position(|(t, _)| t == token).expect("launched");
            let (_, sender) = release.remove(index);
            let _ = sender.send(());
        }

        fn open_all(&self) {
            for (_, sender) in self.release.lock().unwrap().drain(..) {
                let _ = sender.send(());
            }
        }

        fn launched(&self) -> Vec<(PageToken, u64)> {
            self.launched.lock().unwrap().clone()
        }
    }

    #[test]
    fn only_predictable_pagination_with_concurrency_prefetches() {
        assert!(Prefetcher::<Fetched>::new(&offset(10, None), 4).is_some());
        assert!(Prefetcher::<Fetched>::new(&offset(10, None), 1).is_none());
        let cursor: PaginationConfig =
            serde_json::from_str(r#"{"type":"cursor","cursor_path":"/n","cursor_param":"c"}"#).unwrap();
        assert!(Prefetcher::<Fetched>::new(&cursor, 8).is_none());
        let pages: PaginationConfig = serde_json::from_str(r#"{"type":"page_number"}"#).unwrap();
        assert!(Prefetcher::<Fetched>::new(&pages, 2).is_some());
    }

    /// Waits until `count` fetches have been launched.
    async fn launched(gates: &Gates, count: usize) {
        while gates.launched().len() < count {
            tokio::task::yield_now().await;
        }
    }

    /// Runs `prefetch.next(token)` on its own task, so the test can steer the fetches.
    fn wanted(
        gates: &Gates,
        mut prefetch: Prefetcher<Fetched>,
        token: PageToken,
    ) -> tokio::task::JoinHandle<(Prefetcher<Fetched>, Fetched)> {
        let gates = gates.clone();
        tokio::spawn(async move {
            let page = prefetch.next(&token, gates.launch()).await;
            (prefetch, page)
        })
    }

    #[tokio::test]
    async fn first_page_alone_then_depth_pages_ahead_delivered_in_order() {
        let gates = Gates::default();
        let prefetch = Prefetcher::new(&offset(10, None), 3).unwrap();
        let first = wanted(&gates, prefetch, PageToken::Offset(0));
        // The first page goes out alone: nothing is known about the sequence yet.
        launched(&gates, 1).await;
        gates.open_all();
        let (prefetch, page) = first.await.unwrap();
        assert_eq!(page, Fetched(PageToken::Offset(0)));
        assert_eq!(gates.launched(), [(PageToken::Offset(0), 0)]);

        // The paginator confirmed offset 10: three pages go out at once.
        let second = wanted(&gates, prefetch, PageToken::Offset(10));
        launched(&gates, 4).await;
        assert_eq!(
            gates.launched()[1..],
            [
                (PageToken::Offset(10), 0),
                (PageToken::Offset(20), 1),
                (PageToken::Offset(30), 2)
            ]
        );
        // Later pages finishing first do not overtake the wanted one.
        gates.open(&PageToken::Offset(30));
        gates.open(&PageToken::Offset(20));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!second.is_finished(), "offset 10 is still in flight");
        gates.open(&PageToken::Offset(10));
        let (mut prefetch, page) = second.await.unwrap();
        assert_eq!(page, Fetched(PageToken::Offset(10)));

        // The next pages come from the window; one more goes out to keep three in flight.
        let page = prefetch.next(&PageToken::Offset(20), gates.launch()).await;
        assert_eq!(page, Fetched(PageToken::Offset(20)));
        assert_eq!(gates.launched().last(), Some(&(PageToken::Offset(40), 2)));
        let page = prefetch.next(&PageToken::Offset(30), gates.launch()).await;
        assert_eq!(page, Fetched(PageToken::Offset(30)));
        assert_eq!(gates.launched().len(), 6, "offsets 0 to 50");
        // Offset 30 was a short page: the stream ends there and 40 and 50 are discarded.
        gates.open(&PageToken::Offset(40));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            prefetch.finish(),
            Discarded {
                requests: 1,
                retries: 0
            },
            "the finished offset 40 is counted, the aborted offset 50 is not"
        );
    }

    #[tokio::test]
    async fn an_unpredicted_token_discards_the_window() {
        let gates = Gates::default();
        let prefetch = Prefetcher::new(&offset(10, None), 3).unwrap();
        let first = wanted(&gates, prefetch, PageToken::Offset(0));
        launched(&gates, 1).await;
        gates.open_all();
        let (prefetch, _) = first.await.unwrap();
        let second = wanted(&gates, prefetch, PageToken::Offset(10));
        launched(&gates, 4).await;
        gates.open(&PageToken::Offset(10));
        let (mut prefetch, _) = second.await.unwrap();
        // The API returned 15 records instead of 10: the paginator wants offset 25, which
        // was not predicted. Offsets 20 and 30 are dropped unfinished.
        let third = tokio::spawn({
            let gates = gates.clone();
            async move {
                let page = prefetch.next(&PageToken::Offset(25), gates.launch()).await;
                (prefetch, page)
            }
        });
        launched(&gates, 5).await;
        gates.open(&PageToken::Offset(25));
        let (prefetch, page) = third.await.unwrap();
        assert_eq!(page, Fetched(PageToken::Offset(25)));
        assert_eq!(
            gates.launched()[4..],
            [(PageToken::Offset(25), 0)],
            "unconfirmed again: one request"
        );
        assert_eq!(prefetch.finish(), Discarded::default());
    }

    #[tokio::test]
    async fn nothing_past_max_pages_is_requested() {
        let gates = Gates::default();
        let mut prefetch = Prefetcher::new(&offset(10, Some(3)), 8).unwrap();
        for (index, offset) in [0, 10, 20].into_iter().enumerate() {
            let waiter = wanted(&gates, prefetch, PageToken::Offset(offset));
            launched(&gates, index + 1).await;
            gates.open_all();
            prefetch = waiter.await.unwrap().0;
        }
        let tokens: Vec<PageToken> = gates.launched().into_iter().map(|(token, _)| token).collect();
        assert_eq!(
            tokens,
            [PageToken::Offset(0), PageToken::Offset(10), PageToken::Offset(20)]
        );
        assert_eq!(prefetch.finish(), Discarded::default());
    }

    #[tokio::test]
    async fn page_numbers_step_by_one() {
        let pages: PaginationConfig = serde_json::from_str(r#"{"type":"page_number","start_page":1}"#).unwrap();
        let mut prefetch = Prefetcher::new(&pages, 2).unwrap();
        let launched = Arc::new(Mutex::new(Vec::new()));
        for number in 1..=3 {
            let log = launched.clone();
            let page = prefetch
                .next(&PageToken::Page(number), move |token, _| {
                    log.lock().unwrap().push(token.clone());
                    let token = token.clone();
                    async move { Fetched(token) }
                })
                .await;
            assert_eq!(page, Fetched(PageToken::Page(number)));
        }
        assert_eq!(
            *launched.lock().unwrap(),
            [
                PageToken::Page(1),
                PageToken::Page(2),
                PageToken::Page(3),
                PageToken::Page(4)
            ]
        );
        // Let the fetch of page 4 finish before the sequence ends.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(prefetch.finish().requests, 1, "page 4 was fetched ahead and discarded");
    }
}
