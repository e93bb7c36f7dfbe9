CREATE TABLE orders (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   INTEGER NOT NULL,
    user_name TEXT NOT NULL,
    item      TEXT NOT NULL,
    quantity  INTEGER NOT NULL CHECK (quantity > 0)
);
