-- A few fulfilled orders, so that a new shop has something to show.
INSERT INTO orders (customer, item, quantity, status) VALUES
    ('Ada', 'teapot', 1, 'fulfilled'),
    ('Grace', 'cup', 6, 'fulfilled'),
    ('Linus', 'saucer', 6, 'fulfilled');

INSERT INTO jobs (kind, order_id, status, attempts, started_at, finished_at)
SELECT 'fulfil', id, 'done', 1, created_at, created_at FROM orders ORDER BY id;
