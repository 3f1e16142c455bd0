//! Column alignment exactly as Go's `text/tabwriter` does it: cells are tab-terminated (a line's
//! last cell is never padded), and a column's width is computed per *block* of consecutive lines
//! that have that column. kubectl tables use min width 6 / padding 3; `describe` uses 0 / 2.

/// Aligns table rows as `kubectl get` does (min width 6, padding 3).
pub fn align(rows: &[Vec<String>]) -> String {
    format(rows, 6, 3)
}

/// Aligns table rows against remembered column widths, widening them as needed: how
/// `kubectl get -w` keeps later rows in line with the first table.
pub fn align_remembering(rows: &[Vec<String>], widths: &mut Vec<usize>) -> String {
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.resize(i + 1, 6);
            }
            widths[i] = widths[i].max(width_of(cell) + 3);
        }
    }
    let mut out = String::new();
    write_lines(rows, 0, rows.len(), widths, &mut out);
    out
}

/// Aligns tab-separated text as `kubectl describe` does (min width 0, padding 2).
pub fn align_text(text: &str) -> String {
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    format(&rows, 0, 2)
}

/// Go tabwriter's algorithm over pre-split cells.
pub fn format(rows: &[Vec<String>], min_width: usize, padding: usize) -> String {
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(
        rows,
        0,
        rows.len(),
        &mut widths,
        min_width,
        padding,
        &mut out,
    );
    out
}

fn width_of(cell: &str) -> usize {
    cell.chars().count()
}

fn format_block(
    rows: &[Vec<String>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    min_width: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= rows[this].len() {
            this += 1;
            continue;
        }
        write_lines(rows, line0, this, widths, out);
        line0 = this;
        let mut width = min_width;
        while this < line1 && column + 1 < rows[this].len() {
            width = width.max(width_of(&rows[this][column]) + padding);
            this += 1;
        }
        widths.push(width);
        format_block(rows, line0, this, widths, min_width, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(rows, line0, line1, widths, out);
}

fn write_lines(rows: &[Vec<String>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for row in &rows[from..to] {
        for (j, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < row.len() {
                if let Some(&w) = widths.get(j) {
                    out.extend(std::iter::repeat_n(' ', w.saturating_sub(width_of(cell))));
                }
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_are_padded_like_go_tabwriter() {
        let got = align(&[
            row(&["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
            row(&["web-7c5b9d-abcde", "1/1", "Running", "0", "5m"]),
        ]);
        assert_eq!(
            got,
            "NAME               READY   STATUS    RESTARTS   AGE\n\
             web-7c5b9d-abcde   1/1     Running   0          5m\n"
        );
    }

    #[test]
    fn short_columns_get_the_minimum_width() {
        assert_eq!(
            align(&[row(&["A", "B"]), row(&["x", "y"])]),
            "A     B\nx     y\n"
        );
    }

    #[test]
    fn watch_rows_keep_the_first_tables_widths() {
        let mut widths = Vec::new();
        let first = align_remembering(
            &[row(&["NAME", "DATA", "AGE"]), row(&["c1", "1", "5s"])],
            &mut widths,
        );
        assert_eq!(first, "NAME   DATA   AGE\nc1     1      5s\n");
        let later = align_remembering(&[row(&["c1", "1", "6s"])], &mut widths);
        assert_eq!(later, "c1     1      6s\n");
        let wider = align_remembering(&[row(&["a-much-longer-name", "1", "6s"])], &mut widths);
        assert_eq!(wider, "a-much-longer-name   1      6s\n");
    }

    #[test]
    fn no_rows_print_nothing() {
        assert_eq!(align(&[]), "");
    }

    #[test]
    fn blocks_are_aligned_separately_in_describe_text() {
        let text =
            "Name:\tweb\nNamespace:\tdefault\nIPs:\n  IP:\t10.0.0.1\nLabels:\tapp=web\n\tx=y\n";
        assert_eq!(
            align_text(text),
            "Name:       web\nNamespace:  default\nIPs:\n  IP:    10.0.0.1\nLabels:  app=web\n         x=y\n"
        );
    }
}
