//! Drawing the monitor: a title bar with the views, then the view's tables;
//! and the same content as plain text.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table as Grid, Tabs};
use ratatui::Frame;

use super::rows::{self, CHANNEL_HEADER, PAIR_HEADER};
use super::Snapshot;

/// The views, in the order of their keys (1-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Pairs, channels and the latest events.
    Overview,
    /// Pairs only.
    Pairs,
    /// hbd: the verdict and the channels.
    Heartbeat,
    /// Events only.
    Events,
}

impl View {
    /// Every view, in key order.
    pub const ALL: [View; 4] = [View::Overview, View::Pairs, View::Heartbeat, View::Events];

    fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    /// The view right of this one.
    pub fn next(self) -> View {
        View::ALL[(self.index() + 1) % View::ALL.len()]
    }

    /// The view left of this one.
    pub fn previous(self) -> View {
        View::ALL[(self.index() + View::ALL.len() - 1) % View::ALL.len()]
    }
}

fn state_style(state: &str) -> Style {
    match state {
        "PAIR" => Style::default().fg(Color::Green),
        "COPY" => Style::default().fg(Color::Cyan),
        "PSUE" | "DOWN" | "FAILED" => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        "PSUS" | "SSWS" => Style::default().fg(Color::Yellow),
        _ => Style::default(),
    }
}

fn grid<'a>(title: &'a str, header: &'a [&'a str], rows: Vec<Vec<String>>) -> Grid<'a> {
    let widths: Vec<Constraint> = (0..header.len())
        .map(|i| {
            let widest = rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(4);
            Constraint::Length(widest as u16)
        })
        .collect();
    let rows = rows.into_iter().map(|r| {
        Row::new(r.into_iter().map(|c| {
            let style = state_style(&c);
            Cell::from(c).style(style)
        }))
    });
    Grid::new(rows, widths)
        .header(Row::new(header.iter().copied()).bold().underlined())
        .column_spacing(2)
        .block(Block::default().borders(Borders::TOP).title(title))
}

fn message(title: &str, text: String) -> Paragraph<'_> {
    Paragraph::new(text).block(Block::default().borders(Borders::TOP).title(title))
}

fn pairs(frame: &mut Frame, area: Rect, s: &Snapshot) {
    match &s.pairs {
        Ok(p) => frame.render_widget(
            grid(" pairs (mirrord) ", &PAIR_HEADER, rows::pair_rows(p)),
            area,
        ),
        Err(e) => frame.render_widget(
            message(" pairs (mirrord) ", format!("unreachable: {e}")),
            area,
        ),
    }
}

fn heartbeat(frame: &mut Frame, area: Rect, s: &Snapshot) {
    match &s.table {
        Ok(t) => {
            let [line, table] =
                Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(area);
            frame.render_widget(message(" heartbeat (hbd) ", rows::verdict_line(t)), line);
            frame.render_widget(grid("", &CHANNEL_HEADER, rows::channel_rows(t)), table);
        }
        Err(e) => frame.render_widget(
            message(" heartbeat (hbd) ", format!("unreachable: {e}")),
            area,
        ),
    }
}

fn events(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let lines = rows::event_lines(&s.events);
    let shown = (area.height as usize).saturating_sub(1);
    let tail: Vec<Line> = lines[lines.len().saturating_sub(shown)..]
        .iter()
        .map(|l| Line::from(l.as_str()))
        .collect();
    frame.render_widget(
        Paragraph::new(tail).block(Block::default().borders(Borders::TOP).title(" events ")),
        area,
    );
}

/// Draws `view` of `s`.
pub fn draw(frame: &mut Frame, s: &Snapshot, view: View) {
    let [top, body, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let titles = ["1 overview", "2 pairs", "3 heartbeat", "4 events"];
    frame.render_widget(
        Tabs::new(titles)
            .select(view.index())
            .highlight_style(Style::default().reversed())
            .divider("|"),
        top,
    );
    let n_pairs = s.pairs.as_ref().map_or(1, Vec::len) as u16;
    let n_channels = s.table.as_ref().map_or(1, |t| rows::channel_rows(t).len()) as u16;
    match view {
        View::Overview => {
            let [p, h, e] = Layout::vertical([
                Constraint::Length(n_pairs + 2),
                Constraint::Length(n_channels + 4),
                Constraint::Min(3),
            ])
            .areas(body);
            pairs(frame, p, s);
            heartbeat(frame, h, s);
            events(frame, e, s);
        }
        View::Pairs => pairs(frame, body, s),
        View::Heartbeat => heartbeat(frame, body, s),
        View::Events => events(frame, body, s),
    }
    frame.render_widget(
        Line::from(vec![
            Span::raw(" q quit  Tab/←/→ or 1-4 switch view  r refresh  "),
            Span::raw({
                let secs = s.time_ms / 1000;
                format!(
                    "updated {:02}:{:02}:{:02}Z",
                    (secs / 3600) % 24,
                    (secs / 60) % 60,
                    secs % 60
                )
            })
            .dim(),
        ]),
        keys,
    );
}

/// The overview as plain text (not on a terminal).
pub fn plain(s: &Snapshot) -> String {
    let mut text = String::from("pairs (mirrord)\n");
    match &s.pairs {
        Ok(p) => text.push_str(&rows::plain(&PAIR_HEADER, &rows::pair_rows(p))),
        Err(e) => text.push_str(&format!("unreachable: {e}")),
    }
    text.push_str("\n\nheartbeat (hbd)\n");
    match &s.table {
        Ok(t) => {
            text.push_str(&rows::verdict_line(t));
            text.push('\n');
            text.push_str(&rows::plain(&CHANNEL_HEADER, &rows::channel_rows(t)));
        }
        Err(e) => text.push_str(&format!("unreachable: {e}")),
    }
    text.push_str("\n\nevents\n");
    let lines = rows::event_lines(&s.events);
    text.push_str(&lines[lines.len().saturating_sub(20)..].join("\n"));
    text
}
