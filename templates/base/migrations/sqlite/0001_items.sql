-- Items (SQLite). Applied at start by `Database::migrate` (src/repository.rs embeds it);
-- a change to the schema is a new file, 0002_*.sql, added to `migrator` there.
CREATE TABLE items (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL
);
