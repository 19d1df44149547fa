-- When a course's exam may be started: seconds since the epoch, either end open.
-- Kept by the exam's name, so that every environment the name means shares it.
CREATE TABLE exam_windows (
    course TEXT NOT NULL,
    name TEXT NOT NULL,
    opens INTEGER,
    closes INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (course, name)
);
