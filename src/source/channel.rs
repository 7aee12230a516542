//! The channel between a source and its stream's writer, bounded twice: by the number of
//! items waiting ([`ITEMS`]) and by their bytes ([`BYTES`]).
//!
//! A count alone lets memory grow with the size of a page: four pages of 4 MB rows hold
//! 16 MB and more in flight, four pages of small records far less. The byte budget makes
//! the memory between reader and writer the same whatever the rows: a page takes permits
//! for its body and its records' metadata when it is sent and gives them back when the
//! writer is done with it, so the source waits while the writer holds [`BYTES`]. A page
//! larger than the budget takes all of it: it waits until the writer holds nothing else,
//! and is then the only page in flight (one page always fits, so nothing waits forever).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::{Item, RecordMeta};

/// Items waiting between reader and writer, at most.
pub const ITEMS: usize = 4;
/// Bytes of pages between reader and writer (sent and not yet landed), at most, beside the
/// one page larger than this that may be in flight alone.
pub const BYTES: usize = 8 << 20;

/// The channel's end was dropped: the writer failed or the reader stopped.
#[derive(Debug)]
pub struct Closed;

/// The source's end.
#[derive(Clone)]
pub struct ItemSender {
    sender: mpsc::Sender<Delivery>,
    budget: Arc<Semaphore>,
    bytes: usize,
}

/// The writer's end.
pub struct ItemReceiver {
    receiver: mpsc::Receiver<Delivery>,
}

/// An item and the share of the byte budget it holds until it is dropped.
pub struct Delivery {
    pub item: Item,
    pub budget: Option<OwnedSemaphorePermit>,
}

/// A channel of [`ITEMS`] items and [`BYTES`] bytes.
pub fn channel() -> (ItemSender, ItemReceiver) {
    with_limits(ITEMS, BYTES)
}

/// A channel with other limits (tests).
pub fn with_limits(items: usize, bytes: usize) -> (ItemSender, ItemReceiver) {
    let (sender, receiver) = mpsc::channel(items);
    let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS);
    (
        ItemSender {
            sender,
            budget: Arc::new(Semaphore::new(bytes)),
            bytes,
        },
        ItemReceiver { receiver },
    )
}

/// The memory an item holds while it waits: a page's body and its records' metadata (the
/// heap text of keys and cursors is small beside them and not counted).
fn weight(item: &Item) -> usize {
    match item {
        Item::Page(page) => page.body.len() + page.records.len() * std::mem::size_of::<RecordMeta>(),
        Item::DeadPage(dead) => dead.body.kept().len(),
        Item::WindowDone(_) | Item::Checkpoint(_) | Item::AsyncJob(_) => 0,
    }
}

impl ItemSender {
    /// Sends `item`, waiting while the writer holds the byte budget or the channel is full.
    pub async fn send(&self, item: Item) -> Result<(), Closed> {
        let permits = weight(&item).min(self.bytes);
        let budget = if permits == 0 {
            None
        } else {
            let permits = u32::try_from(permits).unwrap_or(u32::MAX);
            Some(
                self.budget
                    .clone()
                    .acquire_many_owned(permits)
                    .await
                    .map_err(|_| Closed)?,
            )
        };
        self.sender.send(Delivery { item, budget }).await.map_err(|_| Closed)
    }
}

impl ItemReceiver {
    /// The next item; `None` once every sender is gone and nothing waits. The delivery's
    /// budget goes back when it is dropped: keep it until the item is landed.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.receiver.recv().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::source::Page;

    fn page(number: u64, bytes: usize) -> Item {
        Item::Page(Page {
            number,
            endpoint: "t".into(),
            extracted_at: String::new(),
            body: Bytes::from(vec![b'x'; bytes]),
            records: Vec::new(),
            parent_key: None,
        })
    }

    fn number(delivery: &Delivery) -> u64 {
        match &delivery.item {
            Item::Page(page) => page.number,
            _ => panic!("not a page"),
        }
    }

    #[tokio::test]
    async fn pages_wait_while_the_writer_holds_the_byte_budget() {
        let (sender, mut receiver) = with_limits(8, 100);
        sender.send(page(1, 60)).await.unwrap();
        // 60 + 60 > 100: the second page waits although the channel has room for 7 more.
        let second = {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(page(2, 60)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the second page was sent past the byte budget");
        let first = receiver.recv().await.unwrap();
        assert_eq!(number(&first), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !second.is_finished(),
            "received but not landed: the first page still holds its bytes"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second page goes once the first is landed")
            .unwrap()
            .unwrap();
        assert_eq!(number(&receiver.recv().await.unwrap()), 2);
    }

    #[tokio::test]
    async fn a_page_larger_than_the_budget_goes_alone() {
        let (sender, mut receiver) = with_limits(8, 100);
        sender.send(page(1, 10)).await.unwrap();
        let large = {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(page(2, 1_000)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!large.is_finished(), "a page over the budget went beside another");
        drop(receiver.recv().await.unwrap());
        tokio::time::timeout(Duration::from_secs(5), large)
            .await
            .expect("a page over the budget is sent once nothing else is in flight")
            .unwrap()
            .unwrap();
        let landed = receiver.recv().await.unwrap();
        assert_eq!(number(&landed), 2);
        // While it is held, not even a window's end of zero bytes is blocked by the budget.
        sender
            .send(Item::WindowDone(crate::source::windows::Window {
                lower: None,
                upper: None,
            }))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_closed_writer_ends_the_send() {
        let (sender, receiver) = with_limits(1, 100);
        drop(receiver);
        assert!(sender.send(page(1, 10)).await.is_err());
    }
}
