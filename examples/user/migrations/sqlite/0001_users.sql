-- Users; ids are the keyset of paging (the primary key index serves it).
CREATE TABLE users (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    name  TEXT NOT NULL,
    email TEXT NOT NULL COLLATE NOCASE,
    CONSTRAINT users_email_key UNIQUE (email)
);
