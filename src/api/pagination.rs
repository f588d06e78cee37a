//! `?page=&limit=` pagination, as in the Ventia seed: page from 1, limit 1..=100 (default
//! 50), and `pagination: {totalItems, totalPages, currentPage}` in the response.

use std::collections::HashMap;

use serde::Serialize;

use super::error::ApiError;

/// Largest `limit`.
pub const MAX_LIMIT: usize = 100;
/// `limit` when none is given.
pub const DEFAULT_LIMIT: usize = 50;

/// A requested page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: usize,
    /// Items per page.
    pub limit: usize,
}

/// The pagination block of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// Items across all pages.
    pub total_items: usize,
    /// Pages at this limit (at least 1).
    pub total_pages: usize,
    /// The page returned.
    pub current_page: usize,
}

impl PageRequest {
    /// Reads `page` and `limit` from a query; `None` when neither is given (callers that
    /// must stay compatible with an unpaginated shape use that).
    pub fn from_query(q: &HashMap<String, String>) -> Result<Option<PageRequest>, ApiError> {
        if !q.contains_key("page") && !q.contains_key("limit") {
            return Ok(None);
        }
        let number = |field: &str, default: usize| -> Result<usize, ApiError> {
            match q.get(field) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| ApiError::validation(field, "must be a positive integer")),
            }
        };
        let page = number("page", 1)?;
        if page == 0 {
            return Err(ApiError::validation("page", "must be 1 or more"));
        }
        let limit = number("limit", DEFAULT_LIMIT)?;
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::validation(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        Ok(Some(PageRequest { page, limit }))
    }

    /// The default first page.
    pub fn first() -> PageRequest {
        PageRequest {
            page: 1,
            limit: DEFAULT_LIMIT,
        }
    }

    /// Cuts `items` down to this page.
    pub fn apply<T>(self, items: Vec<T>) -> (Vec<T>, Pagination) {
        let total_items = items.len();
        let pagination = Pagination {
            total_items,
            total_pages: total_items.div_ceil(self.limit).max(1),
            current_page: self.page,
        };
        let start = (self.page - 1).saturating_mul(self.limit);
        let page = items.into_iter().skip(start).take(self.limit).collect();
        (page, pagination)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_of_120_at_50_are_50_50_20() {
        let items: Vec<u32> = (0..120).collect();
        let sizes: Vec<usize> = (1..=4)
            .map(|page| PageRequest { page, limit: 50 }.apply(items.clone()).0.len())
            .collect();
        assert_eq!(sizes, vec![50, 50, 20, 0]);
        let (third, p) = PageRequest { page: 3, limit: 50 }.apply(items);
        assert_eq!(third[0], 100);
        assert_eq!(
            p,
            Pagination {
                total_items: 120,
                total_pages: 3,
                current_page: 3
            }
        );
    }

    #[test]
    fn limits_out_of_range_name_the_field() {
        for bad in ["0", "101", "x", "-1"] {
            let err = PageRequest::from_query(&q(&[("limit", bad)])).unwrap_err();
            assert!(err.message.contains("limit"), "{bad}: {}", err.message);
        }
        assert!(PageRequest::from_query(&q(&[("page", "0")])).is_err());
        assert_eq!(PageRequest::from_query(&q(&[])).unwrap(), None);
        assert_eq!(
            PageRequest::from_query(&q(&[("page", "2")])).unwrap(),
            Some(PageRequest { page: 2, limit: 50 })
        );
    }
}
