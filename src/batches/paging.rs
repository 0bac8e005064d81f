//! Cursor paging as OpenAI's list endpoints do it (`after`: the last id of the previous page).

/// The items after the one whose id is `after` (from the start when it is absent or unknown),
/// at most `limit`, and whether more follow. `items` are in the listing's order.
pub fn page<T: Clone>(
    items: &[T],
    id: impl Fn(&T) -> &str,
    after: Option<&str>,
    limit: usize,
) -> (Vec<T>, bool) {
    let start = after
        .and_then(|after| items.iter().position(|item| id(item) == after))
        .map_or(0, |at| at + 1);
    let page: Vec<T> = items.iter().skip(start).take(limit).cloned().collect();
    let more = items.len() > start + page.len();
    (page, more)
}

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn pages_follow_the_cursor() {
        fn id<'a>(s: &'a &str) -> &'a str {
            s
        }
        let items = ["a", "b", "c"];
        assert_eq!(page(&items, id, None, 2), (vec!["a", "b"], true));
        assert_eq!(page(&items, id, Some("b"), 2), (vec!["c"], false));
        assert_eq!(page(&items, id, Some("c"), 2), (vec![], false));
        assert_eq!(
            page(&items, id, Some("zz"), 5),
            (vec!["a", "b", "c"], false)
        );
    }
}
