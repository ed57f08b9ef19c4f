-- Nexmark q4: average closing price per category. An auction's closing price is its highest bid between its start and its expiry.
-- The GROUP BY A.id closes each auction when the watermark passes its expires (every bid that can join it is in by then);
-- the outer GROUP BY averages over the whole input, so this script is for a bounded input (a file, or the generator).
-- The generator's events (weir bench nexmark --events 1000000 --write-jsonl nexmark.jsonl):
-- one JSON object per line with one of Person, Auction or Bid.
CREATE SOURCE nexmark (
    Person ROW<id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, state VARCHAR, date_time TIMESTAMP, extra VARCHAR>,
    Auction ROW<id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra VARCHAR>,
    Bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR>,
    date_time AS CASE WHEN Person IS NOT NULL THEN Person.date_time WHEN Auction IS NOT NULL THEN Auction.date_time ELSE Bid.date_time END,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (format = 'jsonl', path = 'nexmark.jsonl');

CREATE VIEW person AS
SELECT Person.id, Person.name, Person.email_address, Person.credit_card, Person.city, Person.state, date_time, Person.extra
FROM nexmark WHERE Person IS NOT NULL;

CREATE VIEW auction AS
SELECT Auction.id, Auction.item_name, Auction.description, Auction.initial_bid, Auction.reserve, date_time, Auction.expires,
       Auction.seller, Auction.category, Auction.extra
FROM nexmark WHERE Auction IS NOT NULL;

CREATE VIEW bid AS
SELECT Bid.auction, Bid.bidder, Bid.price, Bid.channel, Bid.url, date_time, Bid.extra
FROM nexmark WHERE Bid IS NOT NULL;

CREATE SINK q4 WITH (format = 'jsonl', path = 'q4.out.jsonl') AS
SELECT
    Q.category,
    AVG(Q.final) AS final
FROM (
    SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.category
) Q
GROUP BY Q.category;
