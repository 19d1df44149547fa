//! How many repositories are fetched and read at once, overall and per
//! course: a repository is held in memory while it is read (up to
//! `--repo-max-bytes`), so one course's submissions cannot take the memory,
//! the network or the time of the others.

use std::{collections::HashMap, sync::Mutex};

use crate::error::ApiError;

/// The repository fetches running, overall and by course.
#[derive(Debug)]
pub struct RepoFetches {
    running: Mutex<(usize, HashMap<String, usize>)>,
    overall: usize,
    per_course: usize,
}

/// A running fetch, counted until dropped.
#[derive(Debug)]
pub struct Fetching<'a> {
    fetches: &'a RepoFetches,
    course: String,
}

impl RepoFetches {
    /// At most `overall` fetches at once, `per_course` of one course.
    pub fn new(overall: usize, per_course: usize) -> Self {
        Self {
            running: Mutex::new((0, HashMap::new())),
            overall: overall.max(1),
            per_course: per_course.max(1),
        }
    }

    /// Counts a fetch for `course`, or refuses (429) when a limit is reached.
    pub fn start(&self, course: &str) -> Result<Fetching<'_>, ApiError> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let of_course = running.1.get(course).copied().unwrap_or(0);
        if of_course >= self.per_course {
            return Err(ApiError::Busy(format!(
                "course '{}' has {of_course} repositories being fetched already (at most {}); \
                 try again when they are done",
                trousse_builder::error::clip(course, 80),
                self.per_course
            )));
        }
        if running.0 >= self.overall {
            return Err(ApiError::Busy(format!(
                "{} repositories are being fetched (at most {} at once); try again shortly",
                running.0, self.overall
            )));
        }
        running.0 += 1;
        *running.1.entry(course.to_string()).or_default() += 1;
        Ok(Fetching {
            fetches: self,
            course: course.to_string(),
        })
    }
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        let mut running = self
            .fetches
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        running.0 = running.0.saturating_sub(1);
        if let Some(count) = running.1.get_mut(&self.course) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.1.remove(&self.course);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_are_counted_per_course_and_overall() {
        let fetches = RepoFetches::new(3, 2);
        let a1 = fetches.start("a").unwrap();
        let _a2 = fetches.start("a").unwrap();
        assert!(fetches
            .start("a")
            .unwrap_err()
            .to_string()
            .contains("course 'a'"));
        let _b = fetches.start("b").unwrap();
        assert!(fetches
            .start("c")
            .unwrap_err()
            .to_string()
            .contains("at most 3"));
        drop(a1);
        let _c = fetches.start("c").unwrap();
    }
}
